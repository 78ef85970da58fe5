"""What "the numbers PyTorch would give" means, in one place for every parity tool.

A float32 training step is compared with PyTorch through its *update*: for every float tensor of
the state_dict (parameters and batch-norm running statistics), d = w_end - w_start, and the
error is the relative L2 distance ||d_got - d_true|| / ||d_true||, where d_true is PyTorch's
float64 run from the same start (for the running statistics, what the batches added:
end - (1 - momentum) start). A tensor that is never updated has error 1; one whose gradient is
1% off has error 0.01. (Final weights compared by max |diff| / max |w| hide both: a whole
5-step update of a conv is below 1e-2 of its largest weight.)

The tolerance of a tensor is the float32 noise measured where it applies (FORMATS.md, "How close
two float32 trainings can be"): the spread of the references around d_true, that is the largest
relative L2 distance to d_true of PyTorch float32 and of float64 runs whose starting weights
were moved by a few float32 ulps (w * (1 + 3e-7 N(0,1)), several draws). Where a max-pool
window or a ReLU sits on a tie, those runs take the other branch and the spread shows it; where
nothing does, it is ~1e-6. tolerance = min(CEIL, max(FLOOR, K * spread)): a small fixed floor,
a small multiple of the measured spread, and a ceiling well below 1 so that no tensor can pass
without being updated, however noisy its references.

One case has no signal to compare: a tensor whose references part from float64 by more than
its whole update (spread > 1), where the exact update is zero and every run computes rounding
noise. resnet50 at batch 2 and 32x32 is one: layer4's batch norms see two values per channel
(1x1 maps) and normalise them to -1 and +1 whatever they are, so everything below layer4 has a
gradient of exactly zero. Such a tensor is held to K x the spread, without the ceiling, and
counted apart in the summary.

The same holds where float32 itself cannot resolve the update: a batch-norm weight near 1
moved by 1e-7 over a few small steps is stored with an error of its own size, in cltrain and
in PyTorch float32 alike. The resolution of a tensor is the rounding of its final float32
values (ulp / sqrt(12) per element, relative L2 to the update); it joins the spread in the
tolerance, and where 3x it exceeds the ceiling the ceiling does not apply (counted apart too).
"""
import numpy as np
import torch

FLOOR = 1e-4    # relative L2 of an update: float32 against float64 on a well-conditioned step
K = 3           # times the references' spread (the largest of several draws)
CEIL = 0.25     # no tolerance above this: a tensor left unchanged (error 1) always fails
JITTER = 3e-7   # relative size of the ulp jitter of the float64 references' weights


def float_keys(sd):
    return [k for k, v in sd.items() if v.is_floating_point()]


def update(end, start, bn_momentum=0.1):
    """{name: end - start in float64} for the float tensors of two state_dicts; for the
    batch-norm running statistics, end - (1 - momentum) start: what the batches added
    (PyTorch: running = (1 - momentum) running + momentum batch statistic, unbiased variance).
    Minus all of start, the stem's running_var update would be 0.1 (v - 1) with v ~ 1e-2,
    where a variance off by 1/n (biased for unbiased, n = 1792 values) moves it by 6e-6."""
    return {k: end[k].double() - (1 - bn_momentum if "running_" in k else 1) * start[k].double()
            for k in float_keys(start)}


def rel_l2(got, want):
    n = want.norm().item()
    d = (got - want).norm().item()
    if n == 0:
        return 0.0 if d == 0 else float("inf")
    return d / n


def jittered(sd, gen, rel=JITTER):
    """A float64 copy of a state_dict whose float parameters moved by a few float32 ulps."""
    out = {}
    for k, v in sd.items():
        if v.is_floating_point() and "running_" not in k:
            v = v.double()
            out[k] = v * (1 + rel * torch.randn(v.shape, generator=gen, dtype=torch.float64))
        else:
            out[k] = v.double() if v.is_floating_point() else v.clone()
    return out


def spreads(truth, refs):
    """{name: the largest rel_l2 of a reference update to the float64 update}."""
    return {k: max((rel_l2(r[k], truth[k]) for r in refs), default=0.0) for k in truth}


def resolution(end, truth):
    """{name: the rounding of end's float32 values relative to the update}: ||ulp / sqrt(12)||
    / ||truth[name]||, the floor of any float32 result stored in end's tensors."""
    out = {}
    for k, d in truth.items():
        ulp = torch.from_numpy(np.spacing(np.abs(end[k].float().numpy()))).double()
        n = d.norm().item()
        out[k] = (ulp.norm().item() / 12 ** 0.5) / n if n else 0.0
    return out


def unresolved(spread, res):
    """No signal (spread > 1) or below float32's resolution: the ceiling does not apply."""
    return spread > 1 or K * res > CEIL


def tolerance(spread, res=0.0):
    noise = max(spread, res)
    if unresolved(spread, res):
        return K * noise
    return min(CEIL, max(FLOOR, K * noise))


class Bounds:
    """Each tensor's spread, resolution and tolerance for one float64 truth, its references
    and the run's final weights (end: whose float32 rounding bounds the comparison)."""

    def __init__(self, truth, refs, end, spread=None):   # spread: spreads(truth, refs)
        self.spread = spread if spread is not None else spreads(truth, refs)
        self.res = resolution(end, truth)
        self.tol = {k: tolerance(self.spread[k], self.res[k]) for k in truth}
        self.unresolved = {k for k in truth if unresolved(self.spread[k], self.res[k])}


def compare(got, truth, bounds, label, out=print, verbose=False):
    """Checks every tensor's update against truth within bounds (a Bounds); prints the
    failures (and with verbose every tensor), then one summary line. got, truth: update
    dicts. True when all pass."""
    sp, res = bounds.spread, bounds.res
    fails, worst, worst_k, worst_ratio = 0, 0.0, "", 0.0
    for k in truth:
        if k not in got:
            out("FAIL %s: %s missing" % (label, k))
            fails += 1
            continue
        err, tol = rel_l2(got[k], truth[k]), bounds.tol[k]
        bad = not err <= tol   # NaN fails
        if bad or verbose:
            out("%s %s: %s update rel L2 %.2e, tolerance %.2e (references' spread %.2e, "
                "float32 resolution %.2e)" % ("FAIL" if bad else "  ok", label, k, err, tol,
                                              sp[k], res[k]))
        fails += bad
        ratio = err / tol if err == err else float("inf")
        if ratio > worst_ratio:
            worst, worst_k, worst_ratio = err, k, ratio
    noisy = sum(1 for k in sp if K * sp[k] > FLOOR)
    nosignal = sum(1 for k in sp if sp[k] > 1)
    below = len(bounds.unresolved) - nosignal
    out("%s: %d tensors, %d outside tolerance; closest to its bound: %s %.2e (%.0f%% of it); "
        "%d tensors where the references' spread sets the bound (largest %.1e)%s%s"
        % (label, len(truth), fails, worst_k, worst, 100 * worst_ratio, noisy,
           max(sp.values(), default=0.0),
           "; %d with no signal (spread > 1: the exact update is zero)" % nosignal
           if nosignal else "",
           "; %d below float32's resolution of the weights" % below if below else ""))
    return fails == 0


def bn_eval(model):
    """cltrain --bn-eval on a model in train mode: every batch norm on its running
    statistics."""
    for mod in model.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.eval()


def add_residual_bn_arg(ap):
    ap.add_argument("--residual-bn", type=float, default=None,
                    help="initial weight of each residual branch's last batch norm (default: 1, "
                         "torchvision's, for resnet18; 0.2 for the deeper nets: "
                         "parity.condition_residuals)")


def condition(model, arch_name, residual_bn=None):
    """--residual-bn's rule: the deeper nets' residual branches at 0.2 unless told otherwise,
    resnet18 as torchvision initialises it."""
    weight = residual_bn if residual_bn is not None else (1.0 if arch_name == "resnet18" else 0.2)
    if weight != 1.0:
        condition_residuals(model, weight)


def condition_residuals(model, weight):
    """Sets the last batch norm's weight of every residual branch (bn2 of a BasicBlock, bn3 of
    a Bottleneck) to weight. Deeper nets at torchvision's initialisation are chaotic on small
    batches: each block adds a branch as large as its input, and resnet50's float64 runs from
    ulp-jittered weights part by up to 8e-2 in one step. torchvision's zero_init_residual sets
    these weights to 0; 0.2 keeps every path in use and the step as well conditioned as
    resnet18's."""
    import torchvision
    for mod in model.modules():
        if isinstance(mod, torchvision.models.resnet.Bottleneck):
            torch.nn.init.constant_(mod.bn3.weight, weight)
        elif isinstance(mod, torchvision.models.resnet.BasicBlock):
            torch.nn.init.constant_(mod.bn2.weight, weight)
