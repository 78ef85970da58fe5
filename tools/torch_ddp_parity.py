#!/usr/bin/python3
"""PyTorch DistributedDataParallel parity: the same few steps of data-parallel training in
cltrain (2 MPI ranks under mpirun, and 2 devices in one process) and in PyTorch DDP (gloo,
2 processes, DistributedSampler), from the same weights and images; compares the per-step
losses (the mean of the replicas' losses) and the final weights, and checks that cltrain's
2-rank and 2-device runs are bitwise identical.

Usage: tools/torch_ddp_parity.py [--cltrain ./cltrain] [--device SPEC] [--steps 3] [--bn-eval]
                                 [--batch-size 16] [--train-size N] [--image-size 32]
                                 [--keep DIR]

Recipe: resnet18 at 32x32, global batch 16 (8 per replica), SGD lr 0.001 momentum 0.9, no
shuffling (DistributedSampler(shuffle=False): rank r takes samples r, r+2, ...), as the
single-device parity (tools/torch_parity.py). The default data set, 47 images (3 steps' worth
less 1), is one epoch that 2 replicas do not divide: DistributedSampler(drop_last=False) pads
it to 48 with the first image again (rank 1's last sample). --train-size sets another size
(e.g. 45: padded to 46, a last batch of 14). Exit status 0 when every check passes.

Data: Fashion-MNIST's first images as a CIFAR-10 folder (tools/torch_parity.py's
write_fashion: real images keep the steps well conditioned). Every tensor's update (the
running statistics included) is held to PyTorch DDP float64's under tools/parity.py's rule:
relative L2 within a fixed floor or a small multiple of the spread of PyTorch DDP's float32
runs (oneDNN and native kernels) and of a float64 run from ulp-jittered weights.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import parity  # noqa: E402
from torch_parity import batches, write_fashion  # noqa: E402

LOSS_RTOL = 1e-5      # per-step loss, relative (issue 16)
WORLD = 2


def torch_rank(rank, a, work, pix, labels, q, dtype=torch.float32, mkldnn=True, tag="",
               init="init.pth"):
    torch.set_num_threads(1)
    torch.backends.mkldnn.enabled = mkldnn
    dist.init_process_group("gloo", init_method="file://" + os.path.join(work, "rendezvous"),
                            rank=rank, world_size=WORLD)
    m = torchvision.models.resnet18(num_classes=10)
    m = m.to(dtype)
    m.load_state_dict(torch.load(os.path.join(work, init)))
    ddp = torch.nn.parallel.DistributedDataParallel(m)  # broadcast_buffers=True
    opt = torch.optim.SGD(ddp.parameters(), lr=a.lr, momentum=0.9)
    xs, ys = zip(*batches(pix, labels, a.image_size, 1))
    ds = list(zip(xs, ys))
    sampler = torch.utils.data.distributed.DistributedSampler(ds, num_replicas=WORLD, rank=rank,
                                                              shuffle=False)
    idx = list(sampler)
    per = a.batch_size // WORLD
    ddp.train()
    if a.bn_eval:
        parity.bn_eval(m)
    losses = []
    for s in range(min(a.steps, (len(idx) + per - 1) // per)):  # DataLoader(drop_last=False)
        pick = idx[s * per:(s + 1) * per]
        x = torch.cat([ds[i][0] for i in pick]).to(dtype)
        y = torch.cat([ds[i][1] for i in pick])
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(ddp(x), y)
        loss.backward()
        opt.step()
        t = loss.detach().clone()
        dist.all_reduce(t)  # the logged loss: the mean over the replicas
        losses.append(t.item() / WORLD)
    if rank == 0:
        torch.save(m.state_dict(), os.path.join(work, "torch_ddp%s.pth" % tag))
        q.put(losses)
    dist.destroy_process_group()


def run(cmd, env=None):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    if r.returncode != 0:
        print("FAILED: %s\n%s" % (" ".join(cmd), r.stdout))
        sys.exit(1)
    return r.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cltrain", default="./cltrain")
    ap.add_argument("--device", default=os.environ.get("CLTRAIN_DEVICE", "cpu"))
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--train-size", type=int, help="images (default: steps x batch - 1)")
    ap.add_argument("--lr", type=float, default=0.001)
    ap.add_argument("--bn-eval", action="store_true",
                    help="every batch norm in eval mode (cltrain --bn-eval): the recipe for "
                         "several steps, which train-mode batch norm on 8 images per replica "
                         "makes chaotic (float64 from ulp-jittered weights parts by 0.4 in 3 "
                         "steps)")
    ap.add_argument("--keep", help="keep the work folder here")
    a = ap.parse_args()
    work = a.keep or tempfile.mkdtemp(prefix="cltrain-ddp-")
    os.makedirs(work, exist_ok=True)
    n = a.train_size or a.steps * a.batch_size - 1
    pix, labels = write_fashion(os.path.join(work, "data_batch_1.bin"), n)
    write_fashion(os.path.join(work, "test_batch.bin"), 2, "test")
    torch.manual_seed(0)
    init_sd = torchvision.models.resnet18(num_classes=10).state_dict()
    torch.save(init_sd, os.path.join(work, "init.pth"))
    torch.save(parity.jittered(init_sd, torch.Generator().manual_seed(1)),
               os.path.join(work, "init_jittered.pth"))

    common = ["train", "--data", work, "--weights", os.path.join(work, "init.pth"),
              "--arch", "resnet18", "--image-size", str(a.image_size),
              "--batch-size", str(a.batch_size), "--no-shuffle", "--epochs", "1",
              "--max-steps", str(a.steps), "--lr", repr(a.lr), "--momentum", "0.9",
              "--test-limit", "1"] + (["--bn-eval"] if a.bn_eval else [])
    env = dict(os.environ, CLTRAIN_DEVICE=a.device)
    out = {}
    for how in ("mpi", "devices"):
        log, pth = os.path.join(work, how + ".jsonl"), os.path.join(work, how + ".pth")
        if how == "mpi":
            cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(WORLD),
                   "-x", "CLTRAIN_DEVICE", a.cltrain]
        else:
            cmd = [a.cltrain]
        extra = [] if how == "mpi" else ["--devices", ",".join([a.device] * WORLD)]
        run(cmd + common + extra + ["--log", log, "--save", pth], env=env)
        out[how] = ([json.loads(l)["loss"] for l in open(log) if '"loss"' in l],
                    torch.load(pth, weights_only=True))

    def torch_ddp(dtype, mkldnn, tag, init="init.pth"):
        q = mp.get_context("spawn").SimpleQueue()
        mp.spawn(torch_rank, args=(a, work, pix, labels, q, dtype, mkldnn, tag, init),
                 nprocs=WORLD, join=True)
        return q.get(), torch.load(os.path.join(work, "torch_ddp%s.pth" % tag))
    tloss, tsd = torch_ddp(torch.float32, True, "")
    _, sd64 = torch_ddp(torch.float64, True, "_f64")
    _, sd_n = torch_ddp(torch.float32, False, "_native")
    _, sd_j = torch_ddp(torch.float64, True, "_jittered", "init_jittered.pth")
    jit = torch.load(os.path.join(work, "init_jittered.pth"))

    ok = True
    closs, csd = out["mpi"]
    print("%d images, 2 replicas, global batch %d: DistributedSampler pads to %d"
          % (n, a.batch_size, (n + WORLD - 1) // WORLD * WORLD))
    print("step  cltrain (2 ranks)   PyTorch DDP (gloo)   rel diff")
    for i, (c, t) in enumerate(zip(closs, tloss)):
        rel = abs(c - t) / abs(t)
        ok &= rel <= LOSS_RTOL
        print("%4d  %16.8f   %16.8f   %.2e%s" % (i + 1, c, t, rel,
                                                "" if rel <= LOSS_RTOL else "   FAIL"))
    if len(closs) != len(tloss):
        print("FAIL: %d cltrain steps, %d PyTorch steps" % (len(closs), len(tloss)))
        ok = False
    truth = parity.update(sd64, init_sd)
    refs = [parity.update(tsd, init_sd), parity.update(sd_n, init_sd), parity.update(sd_j, jit)]
    ok &= parity.compare(parity.update(csd, init_sd), truth, parity.Bounds(truth, refs, csd),
                         "2 ranks vs PyTorch DDP")
    for k, v in tsd.items():   # num_batches_tracked: exact
        if not v.is_floating_point() and not torch.equal(v, csd[k]):
            print("FAIL: %s %s vs %s" % (k, csd[k].tolist(), v.tolist()))
            ok = False

    dloss, dsd = out["devices"]
    same = dloss == closs and all(torch.equal(dsd[k], csd[k]) for k in csd)
    ok &= same
    print("2 devices in one process vs 2 MPI ranks: %s" %
          ("bitwise identical (losses, weights, buffers)" if same else "FAIL: they differ"))
    print("DDP parity: %s" % ("OK" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
