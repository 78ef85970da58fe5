#!/usr/bin/python3
"""PyTorch's side of `make bench`: ResNet training and evaluation throughput with PyTorch on
the CPU, `cltrain bench` on the same shapes, and the machine's SGEMM limit, side by side.

    tools/bench_torch.py [--cltrain ./cltrain] [--device SPEC] [--shapes 32x64,224x16]
                         [--arch resnet18] [--steps N] [--threads T] [--json]

Each shape is IMAGExBATCH. PyTorch: torchvision <arch>(num_classes=10) (cltrain bench --arch), SGD(lr 0.001,
momentum 0.9), CrossEntropyLoss, synthetic random data, 2 warm-up steps then N timed steps
(default 20 at image size <= 64, 5 above); evaluation: model.eval() under no_grad, 2 warm-up
then N timed batches. Work per image is counted from the model (forward hooks on Conv2d and
Linear); a training step is taken as 3x the forward. The SGEMM limit is the best of square
1024..2048 GEMMs through OpenBLAS (ctypes, when a libopenblas is found), numpy's BLAS and
oneDNN (a 1x1 convolution, the GEMM PyTorch's convolutions run on). Needs python3-torch and
python3-torchvision (Debian: /usr/bin/python3).
"""

import argparse
import ctypes
import ctypes.util
import glob
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

TRAIN_FLOP_FACTOR = 3  # forward + data gradient + weight gradient


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def parse_shapes(text):
    shapes = []
    for part in text.split(","):
        part = part.strip().lower()
        if not part:
            continue
        try:
            s, b = part.split("x")
            s, b = int(s), int(b)
        except ValueError:
            raise SystemExit(f"bench_torch: bad shape '{part}' (want IMAGExBATCH, e.g. 224x16)")
        if s < 32 or b < 1:
            raise SystemExit(f"bench_torch: bad shape '{part}' (image size >= 32, batch >= 1)")
        if b == 1 and s < 64:
            # at 32x32 layer4 is 1x1: BatchNorm in training needs more than one value
            raise SystemExit(f"bench_torch: shape '{part}': batch 1 cannot train at this size")
        shapes.append((s, b))
    if not shapes:
        raise SystemExit("bench_torch: no shapes")
    return shapes


def default_steps(image_size):
    return 20 if image_size <= 64 else 5


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def available_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def loadavg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


# ---------------------------------------------------------------- work per image

def forward_macs(image_size, arch="resnet18"):
    """Multiply-adds of one image's forward pass, counted with hooks on Conv2d and Linear."""
    import torch
    import torchvision

    model = getattr(torchvision.models, arch)(num_classes=10).eval()
    total = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total[0] += out[0].numel() * k  # out[0]: one image

    def linear_hook(m, inp, out):
        total[0] += out[0].numel() * m.in_features

    hooks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    for h in hooks:
        h.remove()
    return total[0]


# ---------------------------------------------------------------- PyTorch

def bench_torch(image_size, batch, steps, warmup=2, seed=0, device="cpu", arch="resnet18"):
    import torch
    import torchvision

    torch.manual_seed(seed)
    model = getattr(torchvision.models, arch)(num_classes=10).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.rand(batch, 3, image_size, image_size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)

    model.train()

    def step():
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss.item()  # waits for the step, as printing the loss would

    for _ in range(warmup):
        step()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        loss = step()
        times.append(time.perf_counter() - t)
    if not math.isfinite(loss):
        raise RuntimeError(f"PyTorch training loss is {loss}")
    train_s = sum(times)

    model.eval()
    with torch.no_grad():
        for _ in range(warmup):
            model(x)
        etimes = []
        for _ in range(steps):
            t = time.perf_counter()
            model(x).sum().item()
            etimes.append(time.perf_counter() - t)
    eval_s = sum(etimes)
    cpu_share = (time.process_time() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    return {
        # CPU seconds per wall second while timing; about the thread count on an idle machine
        "cpu_per_wall": cpu_share,
        "train_images_per_s": batch * steps / train_s,
        "eval_images_per_s": batch * steps / eval_s,
        "train_step_s_mean": train_s / steps,
        "train_step_s_min": min(times),
        "eval_batch_s_mean": eval_s / steps,
        "eval_batch_s_min": min(etimes),
        "steps": steps,
        "warmup": warmup,
        "last_loss": loss,
    }


# ---------------------------------------------------------------- SGEMM limit

def blas_libraries_loaded():
    """Shared libraries with 'blas' in their name mapped into this process."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if "blas" in os.path.basename(path).lower() and path.startswith("/"):
                    libs.add(path)
    except OSError:
        pass
    return sorted(libs)


def threadpool_info():
    try:
        import threadpoolctl  # optional
    except ImportError:
        return None
    try:
        return threadpoolctl.threadpool_info()
    except Exception as e:  # noqa: BLE001 - report, never fail on it
        return [{"error": str(e)}]


def find_openblas(explicit=None):
    cands = []
    if explicit:
        cands.append(explicit)
    if os.environ.get("BENCH_OPENBLAS"):
        cands.append(os.environ["BENCH_OPENBLAS"])
    name = ctypes.util.find_library("openblas")
    if name:
        cands.append(name)
    for pattern in ("/usr/lib/*/openblas-pthread/libopenblas.so*",
                    "/usr/lib/*/openblas-openmp/libopenblas.so*",
                    "/usr/lib/*/libopenblas*.so*", "/usr/lib/libopenblas*.so*",
                    "/usr/local/lib/libopenblas*.so*"):
        cands.extend(sorted(glob.glob(pattern)))
    for c in cands:
        try:
            lib = ctypes.CDLL(c)
            lib.cblas_sgemm  # noqa: B018 - must exist
            return c, lib
        except (OSError, AttributeError):
            continue
    return None, None


def best_gflops(fn, flops, reps, budget_s=4.0):
    fn()  # warm-up
    best = float("inf")
    start = time.perf_counter()
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() - start > budget_s:
            break
    return flops / best / 1e9


# Below this at 1024, skip 2048: a slow BLAS (reference netlib: ~6 GFLOPS) would take seconds
# per 2048^3 call.
SLOW_BLAS_GFLOPS = 20


def measure_sgemm(threads, openblas_path=None, reps=3):
    import numpy as np
    import torch

    results = []
    rng = np.random.default_rng(0)

    # numpy's BLAS (whatever libblas.so.3 numpy was linked against), first: its library is
    # named from this process's mappings, before OpenBLAS is loaded below.
    try:
        for n in (1024, 2048):
            a = rng.random((n, n), dtype=np.float32)
            b = rng.random((n, n), dtype=np.float32)
            g = best_gflops(lambda a=a, b=b: a @ b, 2.0 * n ** 3, reps)
            results.append({"library": "numpy", "path": ", ".join(blas_libraries_loaded()),
                            "n": n, "gflops": g})
            if g < SLOW_BLAS_GFLOPS:
                break
    except Exception as e:  # noqa: BLE001
        results.append({"library": "numpy", "error": str(e)})

    # OpenBLAS through ctypes (cblas_sgemm, row-major), if a libopenblas can be loaded.
    path, lib = find_openblas(openblas_path)
    if lib is not None:
        try:
            if hasattr(lib, "openblas_set_num_threads"):
                lib.openblas_set_num_threads(ctypes.c_int(threads))
            core = None
            if hasattr(lib, "openblas_get_corename"):
                lib.openblas_get_corename.restype = ctypes.c_char_p
                core = lib.openblas_get_corename().decode()
            lib.cblas_sgemm.restype = None
            lib.cblas_sgemm.argtypes = [ctypes.c_int] * 6 + [
                ctypes.c_float, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
                ctypes.c_float, ctypes.c_void_p, ctypes.c_int]
            for n in (1024, 2048):
                a = rng.random((n, n), dtype=np.float32)
                b = rng.random((n, n), dtype=np.float32)
                c = np.zeros((n, n), dtype=np.float32)

                def run(a=a, b=b, c=c, n=n):
                    lib.cblas_sgemm(101, 111, 111, n, n, n, 1.0, a.ctypes.data, n,
                                    b.ctypes.data, n, 0.0, c.ctypes.data, n)

                g = best_gflops(run, 2.0 * n ** 3, reps)
                results.append({"library": "openblas", "path": path, "core": core, "n": n,
                                "gflops": g})
                if g < SLOW_BLAS_GFLOPS:
                    break
        except Exception as e:  # noqa: BLE001
            results.append({"library": "openblas", "path": path, "error": str(e)})

    # oneDNN (PyTorch's convolution backend): a 1x1 convolution is an NxNxN GEMM.
    try:
        for n in (1024, 2048):
            x = torch.rand(1, n, 1, n)
            w = torch.rand(n, n, 1, 1)
            with torch.no_grad():
                g = best_gflops(lambda x=x, w=w: torch.nn.functional.conv2d(x, w),
                                2.0 * n ** 3, reps + 2)
            results.append({"library": "onednn-conv1x1", "n": n, "gflops": g})
    except Exception as e:  # noqa: BLE001
        results.append({"library": "onednn-conv1x1", "error": str(e)})

    ok = [r for r in results if "gflops" in r]
    best = max(ok, key=lambda r: r["gflops"]) if ok else None
    return {
        "limit_gflops": best["gflops"] if best else None,
        "limit_source": f'{best["library"]} n={best["n"]}' if best else None,
        "measurements": results,
        "threadpoolctl": threadpool_info(),
        "env": {k: os.environ[k] for k in ("OPENBLAS_CORETYPE", "OPENBLAS_NUM_THREADS",
                                           "OMP_NUM_THREADS", "MKL_NUM_THREADS")
                if k in os.environ},
    }


# ---------------------------------------------------------------- cltrain

def cltrain_supports_bench(binary, env):
    """None if `cltrain bench` exists, else a reason."""
    if not binary:
        return "no --cltrain given"
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        found = shutil.which(binary)
        if not found:
            return f"{binary} not found or not executable"
    try:
        p = subprocess.run([binary, "bench", "--help"], capture_output=True, text=True,
                           timeout=60, env=env)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"{binary} bench --help: {e}"
    text = (p.stdout + p.stderr).lower()
    if "unknown command" in text or ("usage" in text and "bench" not in text):
        return "this cltrain has no 'bench' command"
    return None


def run_cltrain(binary, image_size, batch, steps, device, timeout, env, arch="resnet18"):
    cmd = [binary, "bench", "--arch", arch, "--image-size", str(image_size),
           "--batch-size", str(batch), "--steps", str(steps)]
    if device:
        cmd += ["--device", device]
    t = time.perf_counter()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout} s", "command": " ".join(cmd)}
    except OSError as e:
        return {"error": str(e), "command": " ".join(cmd)}
    wall = time.perf_counter() - t
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    if p.returncode != 0:
        tail = (p.stderr.strip().splitlines() or lines or ["(no output)"])[-1]
        return {"error": f"exit {p.returncode}: {tail[:300]}", "command": " ".join(cmd)}
    if not lines:
        return {"error": "no output", "command": " ".join(cmd)}
    try:
        res = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"error": f"last line is not JSON: {lines[-1][:200]}", "command": " ".join(cmd)}
    if not isinstance(res, dict):
        return {"error": "last line is not a JSON object", "command": " ".join(cmd)}
    for k in ("train_images_per_s", "eval_images_per_s"):
        v = res.get(k)
        if v is not None and not isinstance(v, (int, float)):
            return {"error": f"{k} is not a number: {v!r}", "command": " ".join(cmd)}
    res["command"] = " ".join(cmd)
    res["wall_s"] = wall  # the whole process: start-up, kernel builds, warm-up, timing
    res["cpu_per_wall"] = child_cpu / max(wall, 1e-9)
    return res


# ---------------------------------------------------------------- report

def derive(entry, macs, limit):
    """Add effective GFLOPS and share of the SGEMM limit to a result with img/s."""
    tr, ev = entry.get("train_images_per_s"), entry.get("eval_images_per_s")
    if isinstance(tr, (int, float)):
        entry["train_gflops"] = 2.0 * macs * TRAIN_FLOP_FACTOR * tr / 1e9
        if limit:
            entry["train_share_of_sgemm_limit"] = entry["train_gflops"] / limit
    if isinstance(ev, (int, float)):
        entry["eval_gflops"] = 2.0 * macs * ev / 1e9
        if limit:
            entry["eval_share_of_sgemm_limit"] = entry["eval_gflops"] / limit


def fmt(v, spec):
    if isinstance(v, (int, float)):
        return format(v, spec)
    width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
    return "n/a".rjust(int(width) if width else 0)


def print_table(res):
    m = res["machine"]
    print(f'machine: {m["cpu"]}, {m["cpus"]} CPUs, {m["threads"]} threads; '
          f'torch {m["torch"]}, torchvision {m["torchvision"]}'
          + (f'; load average {m["loadavg_start"]:.2f} at start' if m["loadavg_start"] else ""))
    print(f'model: {res["arch"]} (torchvision, num_classes=10)')
    s = res["sgemm"]
    parts = [f'{r["library"]} {r["n"]}: {r["gflops"]:.0f}' for r in s["measurements"]
             if "gflops" in r]
    if s["limit_gflops"]:
        print(f'SGEMM limit: {s["limit_gflops"]:.0f} GFLOPS ({s["limit_source"]}, best of: '
              + "; ".join(parts) + ")")
    else:
        print(f'SGEMM limit: n/a ({s["limit_source"] or "no measurement succeeded"})')
    if s.get("env"):
        print("  environment: " + ", ".join(f"{k}={v}" for k, v in s["env"].items()))
    seen = set()
    for r in s["measurements"]:
        if r.get("path") and r["library"] not in seen:
            seen.add(r["library"])
            print(f'  {r["library"]}: {r["path"]}' + (f' (core {r["core"]})' if r.get("core") else ""))
    if s.get("threadpoolctl"):
        for info in s["threadpoolctl"]:
            print("  threadpoolctl: " + ", ".join(f"{k}={v}" for k, v in info.items()
                                                  if k in ("internal_api", "version",
                                                           "num_threads", "architecture",
                                                           "filepath", "error")))
    for r in s["measurements"]:
        if "error" in r:
            print(f'  {r["library"]}: n/a ({r["error"]})')
    busy = [la for la in (m["loadavg_start"], m.get("loadavg_end")) if la is not None]
    if busy and max(busy) > 0.5:
        print(f'WARNING: load average up to {max(busy):.2f} around the run: other processes '
              f'shared the CPUs, the timings are low (CPU/wall below {m["threads"]} shows it)')
    for r in res["shapes"]:
        S, B = r["image_size"], r["batch_size"]
        macs = r["forward_macs_per_image"]
        print()
        print(f'{S}x{S}, batch {B}: {macs / 1e6:,.1f} M MACs/image forward, '
              f'{2 * macs * TRAIN_FLOP_FACTOR / 1e9:.3f} GFLOP/image per training step; '
              f'{r["steps"]} timed steps')
        hdr = (f'  {"":10} {"train img/s":>12} {"eval img/s":>11} {"train GFLOPS":>13} '
               f'{"eval GFLOPS":>12} {"train/limit":>12} {"eval/limit":>11} {"CPU/wall":>9}')
        print(hdr)
        rows = [("PyTorch", r["torch"]), ("cltrain", r["cltrain"])]
        for name, e in rows:
            if "error" in e:
                print(f'  {name:10} n/a ({e["error"]})')
                continue
            print(f'  {name:10} {fmt(e.get("train_images_per_s"), "12.2f")} '
                  f'{fmt(e.get("eval_images_per_s"), "11.2f")} '
                  f'{fmt(e.get("train_gflops"), "13.1f")} {fmt(e.get("eval_gflops"), "12.1f")} '
                  f'{fmt(e.get("train_share_of_sgemm_limit"), "12.1%")} '
                  f'{fmt(e.get("eval_share_of_sgemm_limit"), "11.1%")} '
                  f'{fmt(e.get("cpu_per_wall"), "9.2f")}')
        ratio = r.get("ratio")
        if ratio:
            print(f'  cltrain/PyTorch: train {fmt(ratio.get("train"), ".3f")}, '
                  f'eval {fmt(ratio.get("eval"), ".3f")}'
                  + (f'; cltrain peak device memory {r["cltrain"]["peak_device_bytes"] / 2**20:,.0f} MiB'
                     if isinstance(r["cltrain"].get("peak_device_bytes"), (int, float)) else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cltrain", default=None, help="cltrain binary to compare (e.g. ./cltrain)")
    ap.add_argument("--device", default=None, help="cltrain --device SPEC")
    ap.add_argument("--shapes", default="32x64,224x16", help="IMAGExBATCH,... (default %(default)s)")
    ap.add_argument("--arch", default="resnet18",
                    choices=("resnet18", "resnet34", "resnet50", "resnet101", "resnet152"))
    ap.add_argument("--steps", type=int, default=None,
                    help="timed steps per shape (default 20 at image <= 64, 5 above)")
    ap.add_argument("--threads", type=int, default=None,
                    help="PyTorch/BLAS threads (default: the CPUs available)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead")
    ap.add_argument("--no-sgemm", action="store_true", help="skip the SGEMM limit measurement")
    ap.add_argument("--no-torch", action="store_true", help="skip PyTorch (cltrain only)")
    ap.add_argument("--torch-device", default="cpu",
                    help="PyTorch device: cpu (default), cuda, cuda:1, ... (item() syncs)")
    ap.add_argument("--openblas", default=None,
                    help="libopenblas.so to measure (also $BENCH_OPENBLAS; found automatically)")
    ap.add_argument("--cltrain-timeout", type=float, default=600,
                    help="seconds per cltrain bench run (default %(default)s)")
    args = ap.parse_args()

    shapes = parse_shapes(args.shapes)
    if args.steps is not None and args.steps < 1:
        raise SystemExit("bench_torch: --steps must be >= 1")
    threads = args.threads or available_cpus()
    if threads < 1:
        raise SystemExit("bench_torch: --threads must be >= 1")

    try:
        import torch
        import torchvision
    except ImportError as e:
        raise SystemExit(f"bench_torch: needs PyTorch and torchvision ({e}); "
                         "on Debian: apt-get install python3-torch python3-torchvision, "
                         "run with /usr/bin/python3")
    torch.set_num_threads(threads)

    la = loadavg()
    if la is not None and la > 0.5 and not args.json:
        log(f"bench_torch: note: load average {la:.2f}: other work on this machine skews timings")

    res = {
        "machine": {
            "cpu": cpu_model(), "cpus": available_cpus(), "threads": threads,
            "torch": torch.__version__, "torchvision": torchvision.__version__,
            "python": platform.python_version(), "loadavg_start": la,
        },
        "arch": args.arch,
        "train_flop_factor": TRAIN_FLOP_FACTOR,
        "sgemm": None,
        "shapes": [],
    }

    if args.no_sgemm:
        res["sgemm"] = {"limit_gflops": None, "limit_source": "skipped", "measurements": []}
    else:
        log("bench_torch: measuring the SGEMM limit ...")
        res["sgemm"] = measure_sgemm(threads, args.openblas)
    limit = res["sgemm"]["limit_gflops"]

    env = dict(os.environ)
    why_not = cltrain_supports_bench(args.cltrain, env) if args.cltrain else "no --cltrain given"
    if args.cltrain and why_not and not args.json:
        print(f"cltrain: n/a ({why_not})", flush=True)

    for S, B in shapes:
        steps = args.steps or default_steps(S)
        macs = forward_macs(S, args.arch)
        r = {"image_size": S, "batch_size": B, "steps": steps, "forward_macs_per_image": macs}
        if args.no_torch:
            r["torch"] = {"error": "skipped"}
        else:
            log(f"bench_torch: PyTorch {S}x{S} batch {B}, {steps} steps ...")
            try:
                r["torch"] = bench_torch(S, B, steps, device=args.torch_device, arch=args.arch)
            except Exception as e:  # noqa: BLE001
                r["torch"] = {"error": f"{type(e).__name__}: {e}"}
            derive(r["torch"], macs, limit)
        if why_not:
            r["cltrain"] = {"error": why_not}
        else:
            log(f"bench_torch: cltrain bench {S}x{S} batch {B}, {steps} steps ...")
            r["cltrain"] = run_cltrain(args.cltrain, S, B, steps, args.device,
                                       args.cltrain_timeout, env, args.arch)
            if "error" in r["cltrain"]:
                log(f'cltrain: n/a ({r["cltrain"]["error"]})')
            derive(r["cltrain"], macs, limit)
        t, c = r["torch"], r["cltrain"]
        ratio = {}
        for k, name in (("train_images_per_s", "train"), ("eval_images_per_s", "eval")):
            if isinstance(t.get(k), (int, float)) and isinstance(c.get(k), (int, float)) and t[k]:
                ratio[name] = c[k] / t[k]
        if ratio:
            r["ratio"] = ratio
        res["shapes"].append(r)

    res["machine"]["loadavg_end"] = loadavg()
    if args.json:
        print(json.dumps(res, default=str))
    else:
        print_table(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
