// Learning-rate schedules against torch.optim.lr_scheduler (PyTorch 1.13): the values below
// are opt.param_groups[0]["lr"] at the start of epochs 0..7, base lr 0.1, printed with repr()
// by StepLR(opt, 2, 0.5), CosineAnnealingLR(opt, 8 - W), and with W = 2 both chained after
// SequentialLR([LinearLR(opt, 0.01, total_iters=2), main], milestones=[2]).
// (tools/torch_schedule_parity.py checks the same through `cltrain train --log`.)
#include <criterion/criterion.h>

#include <math.h>
#include <string.h>

#include "host/train/schedule.h"

static void expect_schedule(const char *spec, int warmup, const double *want)
{
    lr_schedule s;
    char err[256];
    cr_assert_eq(lr_schedule_parse(&s, spec, err, sizeof err), 0, "%s", err);
    s.warmup = warmup;
    s.epochs = 8;
    for (int e = 0; e < 8; e++) {
        double got = lr_schedule_at(&s, 0.1, e);
        cr_expect(fabs(got - want[e]) <= 1e-15 * want[e], "%s warmup %d epoch %d: %.17g, "
                  "PyTorch %.17g", spec, warmup, e, got, want[e]);
    }
}

Test(schedule, step_matches_torch)
{
    static const double w0[] = {0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125, 0.0125};
    static const double w2[] = {0.001, 0.0505, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025};
    expect_schedule("step:2:0.5", 0, w0);
    expect_schedule("step:2:0.5", 2, w2);
}

Test(schedule, cosine_matches_torch)
{
    static const double w0[] = {0.1, 0.09619397662556434, 0.08535533905932738,
                                0.0691341716182545, 0.05, 0.030865828381745515,
                                0.014644660940672627, 0.0038060233744356634};
    static const double w2[] = {0.001, 0.0505, 0.1, 0.09330127018922195, 0.07500000000000001,
                                0.05, 0.025000000000000012, 0.006698729810778065};
    expect_schedule("cosine", 0, w0);
    expect_schedule("cosine", 2, w2);
}

Test(schedule, parse_refuses_bad_specs)
{
    lr_schedule s;
    char err[256];
    const char *bad[] = {"step", "step:0:0.1", "step:7", "step:7:", "step:7:x", "step:7:-1",
                         "cos", "linear", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cr_expect_eq(lr_schedule_parse(&s, bad[i], err, sizeof err), -1, "'%s' accepted", bad[i]);
        cr_expect_not_null(strstr(err, "--lr-schedule"), "%s", err);
    }
    cr_assert_eq(lr_schedule_parse(&s, "step:7:0.1", err, sizeof err), 0);
    char buf[64];
    lr_schedule_format(&s, buf, sizeof buf);
    cr_expect_str_eq(buf, "step:7:0.1");
    cr_assert_eq(lr_schedule_parse(&s, "none", err, sizeof err), 0);
    cr_expect_eq(lr_schedule_at(&s, 0.003, 50), 0.003);
}
