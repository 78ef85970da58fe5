// The flags of train, eval and bench: one table, each command allowing its own subset.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_options.h"
#include "host/train/schedule.h"
#include "model/model.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

enum {
    O_DEVICE = 256, O_DATA, O_DATASET, O_WEIGHTS, O_NUM_CLASSES, O_EPOCHS, O_MAX_STEPS,
    O_BATCH, O_LR, O_MOMENTUM, O_WD, O_IMAGE, O_NORMALIZE, O_AUGMENT, O_NO_SHUFFLE, O_SEED,
    O_TRAIN_LIMIT, O_TEST_LIMIT, O_PRINT_EVERY, O_LOG, O_SAVE, O_CHECKPOINT, O_CKPT_EVERY,
    O_RESUME, O_FREEZE, O_BN_EVAL, O_STRICT, O_PREDICTIONS, O_STEPS, O_PROFILE, O_HELP,
    O_NON_STRICT, O_ARCH, O_VAL_SPLIT, O_SKIP_BAD, O_WORKERS, O_RESIZE,
    O_DEVICES,
    O_LR_SCHEDULE, O_WARMUP, O_LABEL_SMOOTHING, O_EVAL_EVERY_EPOCH, O_SAVE_BEST,
    O_NO_REPORT, O_EARLY_STOP,
    O_OPTIMIZER, O_NESTEROV, O_BETAS, O_EPS, O_NORM_WD, O_CLIP, O_ACCUMULATE,
};

static const struct option all_opts[] = {
    { "device", required_argument, 0, O_DEVICE },
    { "data", required_argument, 0, O_DATA },
    { "dataset", required_argument, 0, O_DATASET },
    { "weights", required_argument, 0, O_WEIGHTS },
    { "num-classes", required_argument, 0, O_NUM_CLASSES },
    { "epochs", required_argument, 0, O_EPOCHS },
    { "max-steps", required_argument, 0, O_MAX_STEPS },
    { "batch-size", required_argument, 0, O_BATCH },
    { "lr", required_argument, 0, O_LR },
    { "momentum", required_argument, 0, O_MOMENTUM },
    { "weight-decay", required_argument, 0, O_WD },
    { "image-size", required_argument, 0, O_IMAGE },
    { "normalize", required_argument, 0, O_NORMALIZE },
    { "augment", required_argument, 0, O_AUGMENT },
    { "no-shuffle", no_argument, 0, O_NO_SHUFFLE },
    { "seed", required_argument, 0, O_SEED },
    { "train-limit", required_argument, 0, O_TRAIN_LIMIT },
    { "test-limit", required_argument, 0, O_TEST_LIMIT },
    { "print-every", required_argument, 0, O_PRINT_EVERY },
    { "log", required_argument, 0, O_LOG },
    { "save", required_argument, 0, O_SAVE },
    { "checkpoint", required_argument, 0, O_CHECKPOINT },
    { "checkpoint-every", required_argument, 0, O_CKPT_EVERY },
    { "resume", required_argument, 0, O_RESUME },
    { "freeze", required_argument, 0, O_FREEZE },
    { "bn-eval", no_argument, 0, O_BN_EVAL },
    { "strict", no_argument, 0, O_STRICT },
    { "non-strict", no_argument, 0, O_NON_STRICT },
    { "predictions", required_argument, 0, O_PREDICTIONS },
    { "steps", required_argument, 0, O_STEPS },
    { "profile", no_argument, 0, O_PROFILE },
    { "help", no_argument, 0, O_HELP },
    { "arch", required_argument, 0, O_ARCH },
    { "val-split", required_argument, 0, O_VAL_SPLIT },
    { "skip-bad", no_argument, 0, O_SKIP_BAD },
    { "workers", required_argument, 0, O_WORKERS },
    { "resize", required_argument, 0, O_RESIZE },
    { "devices", required_argument, 0, O_DEVICES },
    { "lr-schedule", required_argument, 0, O_LR_SCHEDULE },
    { "warmup-epochs", required_argument, 0, O_WARMUP },
    { "label-smoothing", required_argument, 0, O_LABEL_SMOOTHING },
    { "eval-every-epoch", no_argument, 0, O_EVAL_EVERY_EPOCH },
    { "save-best", required_argument, 0, O_SAVE_BEST },
    { "no-report", no_argument, 0, O_NO_REPORT },
    { "early-stop", required_argument, 0, O_EARLY_STOP },
    { "optimizer", required_argument, 0, O_OPTIMIZER },
    { "nesterov", no_argument, 0, O_NESTEROV },
    { "betas", required_argument, 0, O_BETAS },
    { "eps", required_argument, 0, O_EPS },
    { "norm-weight-decay", required_argument, 0, O_NORM_WD },
    { "clip-grad-norm", required_argument, 0, O_CLIP },
    { "accumulate", required_argument, 0, O_ACCUMULATE },
    { 0, 0, 0, 0 },
};

static int allowed(const int *ids, int id) {
    for (; *ids; ids++)
        if (*ids == id) return 1;
    return 0;
}

static const int train_ids[] = { O_DEVICE, O_DATA, O_DATASET, O_WEIGHTS, O_NUM_CLASSES,
                                 O_EPOCHS, O_MAX_STEPS, O_BATCH, O_LR, O_MOMENTUM, O_WD,
                                 O_IMAGE, O_NORMALIZE, O_AUGMENT, O_NO_SHUFFLE, O_SEED,
                                 O_TRAIN_LIMIT, O_TEST_LIMIT, O_PRINT_EVERY, O_LOG, O_SAVE,
                                 O_CHECKPOINT, O_CKPT_EVERY, O_RESUME, O_FREEZE, O_BN_EVAL,
                                 O_STRICT, O_NON_STRICT, O_HELP, O_ARCH, O_VAL_SPLIT,
                                 O_SKIP_BAD, O_WORKERS, O_RESIZE, O_DEVICES, O_LR_SCHEDULE,
                                 O_WARMUP, O_LABEL_SMOOTHING, O_EVAL_EVERY_EPOCH, O_SAVE_BEST,
                                 O_NO_REPORT, O_EARLY_STOP, O_OPTIMIZER, O_NESTEROV, O_BETAS, O_EPS,
                                 O_NORM_WD, O_CLIP, O_ACCUMULATE, 0 };
static const int eval_ids[] = { O_DEVICE, O_DATA, O_DATASET, O_WEIGHTS, O_NUM_CLASSES, O_BATCH,
                                O_IMAGE, O_NORMALIZE, O_TEST_LIMIT, O_PREDICTIONS, O_STRICT,
                                O_NON_STRICT, O_HELP, O_ARCH, O_VAL_SPLIT, O_SKIP_BAD, O_WORKERS,
                                O_RESIZE, 0 };
static const int bench_ids[] = { O_DEVICE, O_BATCH, O_IMAGE, O_STEPS, O_NUM_CLASSES, O_SEED,
                                 O_FREEZE, O_PROFILE, O_STRICT, O_NON_STRICT, O_HELP, O_ARCH,
                                 O_OPTIMIZER, 0 };

// --betas B1,B2: torch.optim.Adam's betas, each in [0, 1).
static int parse_betas(const char *s, run_options *o) {
    char *end = NULL;
    double b1 = strtod(s, &end), b2 = -1;
    if (end != s && *end == ',') {
        const char *t = end + 1;
        b2 = strtod(t, &end);
        if (end == t || *end) b2 = -1;
    }
    if (!(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1)) {
        fprintf(stderr, "cltrain: error: --betas expects B1,B2 with each in [0, 1), got '%s'\n",
                s);
        return -1;
    }
    o->beta1 = b1;
    o->beta2 = b2;
    return 0;
}

int cmd_check_optim_flags(const run_options *o, unsigned long long given, const char *usage) {
    int sgd = o->optimizer == OPTIM_SGD;
    const char *name = optim_kind_name((optim_kind)o->optimizer);
    if (sgd && (cmd_flag_given(given, "betas") || cmd_flag_given(given, "eps")))
        return cli_usage_error(usage, "--%s applies to --optimizer adam|adamw, not sgd",
                               cmd_flag_given(given, "betas") ? "betas" : "eps");
    if (!sgd && (cmd_flag_given(given, "momentum") || o->nesterov))
        return cli_usage_error(usage, "--%s applies to --optimizer sgd, not %s (Adam's "
                               "averages are --betas)", o->nesterov ? "nesterov" : "momentum",
                               name);
    if (o->nesterov && o->momentum == 0)
        return cli_usage_error(usage, "--nesterov needs a momentum: --momentum is 0");
    return 0;
}

void run_options_defaults(run_options *o) {
    memset(o, 0, sizeof *o);
    o->epochs = 10;          // the seed's defaults
    o->batch_size = 64;
    o->lr = 0.001;
    o->momentum = 0.9;
    o->image_size = 224;
    o->shuffle = 1;
    o->print_every = 100;
    o->freeze = -1;
    o->strict = 1;           // PyTorch's load_state_dict(strict=True); --non-strict
    o->steps = 10;
    o->strict = 1;           // load_state_dict(strict=True)
    optim_config c;
    optim_config_defaults(&c);
    o->optimizer = (int)c.kind;
    o->beta1 = c.beta1;
    o->beta2 = c.beta2;
    o->eps = c.eps;
    o->norm_weight_decay = -1;  // --weight-decay's
    o->accumulate = 1;
}

int cmd_parse_options(int argc, char **argv, run_options *o, cmd_kind kind, const char *usage,
                      unsigned long long *explicit_mask) {
    static const char *optimizer_choices[] = { "sgd", "adam", "adamw", NULL };
    static const char *normalize_choices[] = { "none", "imagenet", NULL };
    static const char *augment_choices[] = { "none", "flip-crop", "rrc-flip", NULL };
    static const char *dataset_choices[] = { "auto", "cifar10", "idx", "folder", NULL };
    const int *ids = kind == CMD_TRAIN ? train_ids : kind == CMD_EVAL ? eval_ids : bench_ids;
    int c, bad = 0;
    long v;
    double d;
    if (explicit_mask) *explicit_mask = 0;
    optind = 0;  // 0, not 1: glibc and musl then also forget a half-read "-abc" of an earlier call
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", all_opts, NULL)) != -1) {
        if (c == '?' || c == ':' || !allowed(ids, c)) {
            const char *arg = argv[optind - 1];
            if (c == ':')
                return cli_usage_error(usage, "%s needs a value", arg);
            if (c == '?' && optopt)  // a short option: argv[optind - 1] may be another word
                return cli_usage_error(usage, "unknown option '-%c'", optopt);
            for (int i = 0; c != '?' && all_opts[i].name; i++)  // known, not for this command
                if (all_opts[i].val == c)
                    return cli_usage_error(usage, "unknown option '--%s'", all_opts[i].name);
            return cli_usage_error(usage, "unknown option '%s'", arg);
        }
        if (explicit_mask && c - O_DEVICE < 64) *explicit_mask |= 1ULL << (c - O_DEVICE);
        switch (c) {
        case O_HELP: fputs(usage, stdout); return -1;
        case O_DEVICE: o->device = optarg; break;
        case O_DEVICES: o->devices = optarg; break;
        case O_DATA: o->data = optarg; break;
        case O_DATASET:
            if (cli_parse_choice("--dataset", optarg, dataset_choices) < 0) bad = 1;
            else o->dataset = optarg;
            break;
        case O_WEIGHTS: o->weights = optarg; break;
        case O_NUM_CLASSES: bad |= cli_parse_int("--num-classes", optarg, 2, 100000, &o->num_classes) != 0; break;
        case O_EPOCHS: bad |= cli_parse_int("--epochs", optarg, 1, 1000000, &o->epochs) != 0; break;
        case O_MAX_STEPS: bad |= cli_parse_int("--max-steps", optarg, 1, 2000000000, &o->max_steps) != 0; break;
        case O_BATCH: bad |= cli_parse_int("--batch-size", optarg, 1, 1048576, &o->batch_size) != 0; break;
        case O_LR: bad |= cli_parse_float("--lr", optarg, 0.0, 1e6, &o->lr) != 0; break;
        case O_MOMENTUM: bad |= cli_parse_float("--momentum", optarg, 0.0, 1.0, &o->momentum) != 0; break;
        case O_WD: bad |= cli_parse_float("--weight-decay", optarg, 0.0, 1e6, &o->weight_decay) != 0; break;
        case O_IMAGE: bad |= cli_parse_int("--image-size", optarg, 1, 4096, &o->image_size) != 0; break;
        case O_NORMALIZE:
            if ((o->normalize = cli_parse_choice("--normalize", optarg, normalize_choices)) < 0) bad = 1;
            break;
        case O_AUGMENT:
            if ((o->augment = cli_parse_choice("--augment", optarg, augment_choices)) < 0) bad = 1;
            break;
        case O_NO_SHUFFLE: o->shuffle = 0; break;
        case O_SEED:
            if (cli_parse_long("--seed", optarg, 0, 0x7fffffffffffffffL, &v) != 0) bad = 1;
            else o->seed = v;
            break;
        case O_TRAIN_LIMIT: bad |= cli_parse_int("--train-limit", optarg, 1, 2000000000, &o->train_limit) != 0; break;
        case O_TEST_LIMIT: bad |= cli_parse_int("--test-limit", optarg, 1, 2000000000, &o->test_limit) != 0; break;
        case O_PRINT_EVERY: bad |= cli_parse_int("--print-every", optarg, 1, 2000000000, &o->print_every) != 0; break;
        case O_LOG: o->log = optarg; break;
        case O_SAVE: o->save = optarg; break;
        case O_CHECKPOINT: o->checkpoint = optarg; break;
        case O_CKPT_EVERY: bad |= cli_parse_int("--checkpoint-every", optarg, 1, 2000000000, &o->checkpoint_every) != 0; break;
        case O_RESUME: o->resume = optarg; break;
        case O_FREEZE:
            o->freeze = model_freeze_from_name(optarg);
            if (o->freeze < -1) {
                fprintf(stderr, "cltrain: error: --freeze expects one of none|stem|layer1|layer2|"
                                "layer3|layer4|backbone, got '%s'\n", optarg);
                bad = 1;
            }
            break;
        case O_BN_EVAL: o->bn_eval = 1; break;
        case O_STRICT: o->strict = 1; break;  // the default; kept for old command lines
        case O_NON_STRICT: o->strict = 0; break;
        case O_PREDICTIONS: o->predictions = optarg; break;
        case O_STEPS: bad |= cli_parse_int("--steps", optarg, 1, 1000000, &o->steps) != 0; break;
        case O_PROFILE: o->profile = 1; break;
        case O_ARCH: {
            model_arch cfg;
            char e[160];
            o->arch = optarg;
            if (model_arch_named(&cfg, optarg, 1, e, sizeof e) != 0) {
                fprintf(stderr, "cltrain: error: --arch: %s\n", e);
                bad = 1;
            }
            break;
        }
        case O_VAL_SPLIT:
            bad |= cli_parse_float("--val-split", optarg, 1e-9, 1.0 - 1e-9, &o->val_split) != 0;
            break;
        case O_SKIP_BAD: o->skip_bad = 1; break;
        case O_WORKERS: bad |= cli_parse_int("--workers", optarg, 1, 64, &o->workers) != 0; break;
        case O_RESIZE: bad |= cli_parse_int("--resize", optarg, 1, 4096, &o->resize) != 0; break;
        case O_LR_SCHEDULE: {
            lr_schedule ls;
            char e[256];
            if (lr_schedule_parse(&ls, optarg, e, sizeof e) != 0) {
                fprintf(stderr, "cltrain: error: %s\n", e);
                bad = 1;
            }
            o->lr_schedule = optarg;
            break;
        }
        case O_WARMUP: bad |= cli_parse_int("--warmup-epochs", optarg, 0, 1000000, &o->warmup_epochs) != 0; break;
        case O_LABEL_SMOOTHING:
            bad |= cli_parse_float("--label-smoothing", optarg, 0.0, 1.0, &o->label_smoothing) != 0;
            break;
        case O_EVAL_EVERY_EPOCH: o->eval_every_epoch = 1; break;
        case O_SAVE_BEST: o->save_best = optarg; break;
        case O_NO_REPORT: o->no_report = 1; break;
        case O_EARLY_STOP:
            // One line naming the flag (no usage): N counts epochs without improvement.
            if (cli_parse_int("--early-stop", optarg, 1, 1000000, &o->early_stop) != 0)
                return CLI_EXIT_USAGE;
            break;
        case O_OPTIMIZER:
            if ((o->optimizer = cli_parse_choice("--optimizer", optarg, optimizer_choices)) < 0)
                bad = 1;
            break;
        case O_NESTEROV: o->nesterov = 1; break;
        case O_BETAS: bad |= parse_betas(optarg, o) != 0; break;
        case O_EPS:
            bad |= cli_parse_float("--eps", optarg, 0.0, 1.0, &o->eps) != 0;
            if (!bad && !(o->eps > 0)) {
                fprintf(stderr, "cltrain: error: --eps must be above 0, got %s\n", optarg);
                bad = 1;
            }
            break;
        case O_NORM_WD:
            bad |= cli_parse_float("--norm-weight-decay", optarg, 0.0, 1e6, &o->norm_weight_decay) != 0;
            break;
        case O_CLIP:
            bad |= cli_parse_float("--clip-grad-norm", optarg, 0.0, 1e12, &o->clip_grad_norm) != 0;
            if (!bad && !(o->clip_grad_norm > 0)) {
                fprintf(stderr, "cltrain: error: --clip-grad-norm must be above 0, got %s\n",
                        optarg);
                bad = 1;
            }
            break;
        case O_ACCUMULATE: bad |= cli_parse_int("--accumulate", optarg, 1, 1000000, &o->accumulate) != 0; break;
        }
        if (bad) return cli_show_usage(usage);
    }
    (void)d;
    if (optind < argc) return cli_usage_error(usage, "unexpected argument '%s'", argv[optind]);
    return 0;
}

int cmd_flag_given(unsigned long long mask, const char *name) {
    for (int i = 0; all_opts[i].name; i++)
        if (!strcmp(all_opts[i].name, name)) return (mask >> (all_opts[i].val - O_DEVICE)) & 1;
    return 0;
}

void cmd_flags_given(unsigned long long mask, const char **names, int max) {
    int n = 0;
    for (int i = 0; all_opts[i].name && n < max - 1; i++)
        if (all_opts[i].val - O_DEVICE < 64 && ((mask >> (all_opts[i].val - O_DEVICE)) & 1))
            names[n++] = all_opts[i].name;
    names[n] = NULL;
}

void cmd_train_config(const run_options *o, train_config *c) {
    *c = (train_config){ .data = o->data, .dataset = o->dataset, .epochs = o->epochs,
                         .max_steps = o->max_steps, .batch_size = o->batch_size,
                         .image_size = o->image_size, .normalize = o->normalize,
                         .augment = o->augment, .shuffle = o->shuffle, .seed = o->seed,
                         .train_limit = o->train_limit, .freeze = o->freeze,
                         .bn_eval = o->bn_eval, .num_classes = o->num_classes,
                         .resize = o->resize, .val_split = o->val_split, .lr = o->lr,
                         .momentum = o->momentum, .weight_decay = o->weight_decay,
                         .lr_schedule = o->lr_schedule, .warmup_epochs = o->warmup_epochs,
                         .label_smoothing = o->label_smoothing, .replicas = o->replicas,
                         .optimizer = o->optimizer, .nesterov = o->nesterov,
                         .accumulate = o->accumulate, .beta1 = o->beta1, .beta2 = o->beta2,
                         .eps = o->eps, .norm_weight_decay = o->norm_weight_decay,
                         .clip_grad_norm = o->clip_grad_norm };
}

void cmd_take_train_config(run_options *o, const train_config *c) {
    o->data = c->data;
    o->dataset = c->dataset;
    o->epochs = c->epochs;
    o->max_steps = c->max_steps;
    o->batch_size = c->batch_size;
    o->image_size = c->image_size;
    o->normalize = c->normalize;
    o->augment = c->augment;
    o->shuffle = c->shuffle;
    o->seed = c->seed;
    o->train_limit = c->train_limit;
    o->freeze = c->freeze;
    o->bn_eval = c->bn_eval;
    o->num_classes = c->num_classes;
    o->resize = c->resize;
    o->val_split = c->val_split;
    o->lr = c->lr;
    o->momentum = c->momentum;
    o->weight_decay = c->weight_decay;
    o->lr_schedule = c->lr_schedule;
    o->warmup_epochs = c->warmup_epochs;
    o->label_smoothing = c->label_smoothing;
    o->replicas = c->replicas;
    o->optimizer = c->optimizer;
    o->nesterov = c->nesterov;
    o->accumulate = c->accumulate;
    o->beta1 = c->beta1;
    o->beta2 = c->beta2;
    o->eps = c->eps;
    o->norm_weight_decay = c->norm_weight_decay;
    o->clip_grad_norm = c->clip_grad_norm;
}
