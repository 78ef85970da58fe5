// Training state files: see train_state.h.
#define _POSIX_C_SOURCE 200809L
#include "host/train/train_state.h"
#include "host/train/schedule.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

// Version 2 adds the data set's format and folder (args.dataset, args.data); version 1 files
// load (their data set is then checked by its classes and image count only). Version 3 adds
// the lr schedule (args.lr-schedule, args.warmup-epochs, schedule_epochs), args.label-smoothing
// and best_accuracy; older files load as runs without them (constant lr, no smoothing).
static const char state_prefix[] = "cltrain-training-state-";
enum { STATE_VERSION = 3 };

void train_state_init(train_state *st) {
    memset(st, 0, sizeof *st);
    st->best_accuracy = -1;
    ckpt_init(&st->file);
}

void train_state_free(train_state *st) { ckpt_free(&st->file); }

// Was the long flag `name` among those the command line gave?
static int flag_given(const char *const *given, const char *name) {
    for (; given && *given; given++)
        if (!strcmp(*given, name)) return 1;
    return 0;
}

static int get_int(const ckpt *c, const char *name, long long *v) {
    int i = ckpt_find(c, name);
    if (i < 0 || c->e[i].kind != CKPT_INT) return -1;
    *v = c->e[i].ival;
    return 0;
}

// Floats are stored as strings ("%.17g" round-trips a double exactly): PyTorch 1.13's
// weights_only unpickler has no BINFLOAT opcode, and the file must load there.
static int get_float(const ckpt *c, const char *name, double *v) {
    int i = ckpt_find(c, name);
    if (i < 0) return -1;
    if (c->e[i].kind == CKPT_FLOAT) { *v = c->e[i].fval; return 0; }
    if (c->e[i].kind != CKPT_STRING) return -1;
    char *end = NULL;
    *v = strtod(c->e[i].sval, &end);
    return (end == c->e[i].sval || *end || !isfinite(*v)) ? -1 : 0;
}

static int add_float(ckpt *c, const char *name, double v) {
    char s[64];
    snprintf(s, sizeof s, "%.17g", v);
    return ckpt_add_string(c, name, s);
}

// The run-shaping integer arguments: flag name (state key "args.<flag>"), field, and the range
// the command line allows (a hostile file must not bring a value the flags would refuse).
// Choice flags name their values (names[v - lo]) in messages.
typedef struct int_arg { const char *flag; int *field; int lo, hi; const char *const *names; } int_arg;

static const char *const normalize_names[] = { "none", "imagenet" };
static const char *const augment_names[] = { "none", "flip-crop", "rrc-flip" };
static const char *const freeze_names[] = { "none", "stem", "layer1", "layer2", "layer3",
                                            "layer4" };

// The int_arg table of the options o: what train_state_write saves (in this order) and
// train_state_read checks a saved state against.
enum { INT_ARGS = 8 };
static void int_args_of(train_config *o, int_arg ints[INT_ARGS]) {
    const int_arg t[INT_ARGS] = {
        { "batch-size", &o->batch_size, 1, 1048576, NULL },
        { "image-size", &o->image_size, 1, 4096, NULL },
        { "normalize", &o->normalize, 0, 1, normalize_names },
        { "augment", &o->augment, 0, 2, augment_names },
        { "train-limit", &o->train_limit, 0, 2000000000, NULL },
        { "freeze", &o->freeze, -1, 4, freeze_names },
        { "bn-eval", &o->bn_eval, 0, 1, NULL },
        { "num-classes", &o->num_classes, 1, 100000, NULL },
    };
    memcpy(ints, t, sizeof t);
}

// "--seed 5 contradicts the saved training state's 4 in FILE" (a usage error).
// The shortest "%g" text that reads back as v (0.003, not 0.0030000000000000001).
static void shortest(char *out, size_t len, double v) {
    for (int digits = 6; digits <= 17; digits++) {
        snprintf(out, len, "%.*g", digits, v);
        if (strtod(out, NULL) == v) return;
    }
}

static int contradiction(train_state *st, char *err, size_t errlen, const char *path,
                         const char *flag, double given, double saved) {
    char g[32], s[32];
    shortest(g, sizeof g, given);
    shortest(s, sizeof s, saved);
    snprintf(err, errlen, "--%s %s contradicts the saved training state's %s in %s", flag, g, s,
             path);
    st->usage_error = 1;
    return -1;
}

// The run's string arguments (version 2): the data set's format. A version 1 file has none.
static int read_strings(train_state *st, const char *path, const train_config *o,
                        const char *const *given, char *err, size_t errlen) {
    int i = ckpt_find(&st->file, "args.dataset");
    if (i < 0) return 0;
    const ckpt_entry *e = &st->file.e[i];
    if (e->kind != CKPT_STRING || !*e->sval || strlen(e->sval) >= sizeof st->dataset) {
        snprintf(err, errlen, "%s: training state is damaged: 'args.dataset'", path);
        return -1;
    }
    snprintf(st->dataset, sizeof st->dataset, "%s", e->sval);
    if (flag_given(given, "dataset") && o->dataset && strcmp(o->dataset, "auto") &&
        strcmp(o->dataset, st->dataset)) {
        snprintf(err, errlen, "--dataset %s contradicts the saved training state's %s in %s",
                 o->dataset, st->dataset, path);
        st->usage_error = 1;
        return -1;
    }
    int d = ckpt_find(&st->file, "args.data");
    if (d >= 0 && st->file.e[d].kind == CKPT_STRING)
        snprintf(st->data, sizeof st->data, "%s", st->file.e[d].sval);
    return 0;
}

// The data-shaping arguments added after version 3 first shipped: --resize (0: none) and
// --val-split (0: none). A file without them keeps what the command line says.
static int read_data_args(train_state *st, const char *path, train_config *o,
                          const char *const *given, char *err, size_t errlen) {
    const ckpt *c = &st->file;
    long long resize = 0;
    double split = 0;
    int has_resize = ckpt_find(c, "args.resize") >= 0, has_split = ckpt_find(c, "args.val-split") >= 0;
    if ((has_resize && (get_int(c, "args.resize", &resize) || resize < 0 || resize > 4096)) ||
        (has_split && (get_float(c, "args.val-split", &split) || split < 0 || split >= 1))) {
        snprintf(err, errlen, "%s: training state is damaged: its --resize or --val-split", path);
        return -1;
    }
    if (has_resize) {
        if (flag_given(given, "resize") && o->resize != resize)
            return contradiction(st, err, errlen, path, "resize", o->resize, (double)resize);
        o->resize = (int)resize;
    }
    if (has_split) {
        if (flag_given(given, "val-split") && o->val_split != split)
            return contradiction(st, err, errlen, path, "val-split", o->val_split, split);
        o->val_split = split;
    }
    return 0;
}

// The optimizer's arguments (added within version 3): absent from older files, which are
// SGD runs (--momentum, --weight-decay as saved) without the newer flags.
static int read_optim_args(train_state *st, const char *path, train_config *o,
                           const char *const *given, char *err, size_t errlen) {
    const ckpt *c = &st->file;
    int i = ckpt_find(c, "args.optimizer");
    const char *name = i >= 0 && c->e[i].kind == CKPT_STRING ? c->e[i].sval : "sgd";
    int kind = optim_kind_from_name(name);
    long long nesterov = 0, accumulate = 1;
    double b1 = 0.9, b2 = 0.999, eps = 1e-8, nwd = -1, clip = 0;
#define OPT_INT(key, v) (ckpt_find(c, key) >= 0 && get_int(c, key, v))
#define OPT_FLOAT(key, v) (ckpt_find(c, key) >= 0 && get_float(c, key, v))
    if ((i >= 0 && c->e[i].kind != CKPT_STRING) || kind < 0 ||
        OPT_INT("args.nesterov", &nesterov) || OPT_INT("args.accumulate", &accumulate) ||
        OPT_FLOAT("args.beta1", &b1) || OPT_FLOAT("args.beta2", &b2) ||
        OPT_FLOAT("args.eps", &eps) || OPT_FLOAT("args.norm-weight-decay", &nwd) ||
        OPT_FLOAT("args.clip-grad-norm", &clip) || nesterov < 0 || nesterov > 1 ||
        accumulate < 1 || accumulate > 1000000 || !(b1 >= 0 && b1 < 1) || !(b2 >= 0 && b2 < 1) ||
        !(eps > 0) || nwd > 1e6 || clip < 0 || clip > 1e12) {
        snprintf(err, errlen, "%s: training state is damaged: its optimizer arguments", path);
        return -1;
    }
#undef OPT_INT
#undef OPT_FLOAT
    if (flag_given(given, "optimizer") && o->optimizer != kind) {
        snprintf(err, errlen, "--optimizer %s contradicts the saved training state's %s in %s",
                 optim_kind_name((optim_kind)o->optimizer), name, path);
        st->usage_error = 1;
        return -1;
    }
    if (flag_given(given, "nesterov") && !nesterov) {
        snprintf(err, errlen, "--nesterov contradicts the saved training state in %s, which "
                              "has no Nesterov momentum", path);
        st->usage_error = 1;
        return -1;
    }
    if (flag_given(given, "betas") && (o->beta1 != b1 || o->beta2 != b2)) {
        snprintf(err, errlen, "--betas %.9g,%.9g contradicts the saved training state's "
                              "%.9g,%.9g in %s", o->beta1, o->beta2, b1, b2, path);
        st->usage_error = 1;
        return -1;
    }
    const struct { const char *flag; double given, saved; } floats[] = {
        { "eps", o->eps, eps }, { "norm-weight-decay", o->norm_weight_decay, nwd },
        { "clip-grad-norm", o->clip_grad_norm, clip },
        { "accumulate", o->accumulate, (double)accumulate },
    };
    for (size_t k = 0; k < sizeof floats / sizeof floats[0]; k++)
        if (flag_given(given, floats[k].flag) && floats[k].given != floats[k].saved)
            return contradiction(st, err, errlen, path, floats[k].flag, floats[k].given,
                                 floats[k].saved);
    o->optimizer = kind;
    o->nesterov = (int)nesterov;
    o->accumulate = (int)accumulate;
    o->beta1 = b1;
    o->beta2 = b2;
    o->eps = eps;
    o->norm_weight_decay = nwd;
    o->clip_grad_norm = clip;
    return 0;
}

// Version 3: the schedule, label smoothing and the best accuracy; defaults for older files.
static int read_schedule(train_state *st, const char *path, train_config *o,
                         const char *const *given, char *err, size_t errlen) {
    const ckpt *c = &st->file;
    int i = ckpt_find(c, "args.lr-schedule");
    const char *saved = i >= 0 && c->e[i].kind == CKPT_STRING ? c->e[i].sval : "none";
    long long warm = 0, horizon = 0;
    double eps = 0, best = -1;
    lr_schedule a, b;
    char why[256];
    if ((ckpt_find(c, "args.warmup-epochs") >= 0 && get_int(c, "args.warmup-epochs", &warm)) ||
        (ckpt_find(c, "schedule_epochs") >= 0 && get_int(c, "schedule_epochs", &horizon)) ||
        (ckpt_find(c, "args.label-smoothing") >= 0 && get_float(c, "args.label-smoothing", &eps)) ||
        (ckpt_find(c, "best_accuracy") >= 0 && get_float(c, "best_accuracy", &best)) ||
        warm < 0 || warm > 1000000 || horizon < 0 || horizon > 1000000 || eps < 0 || eps > 1 ||
        lr_schedule_parse(&a, saved, why, sizeof why)) {
        snprintf(err, errlen, "%s: training state is damaged: its lr schedule or label smoothing",
                 path);
        return -1;
    }
    char gs[64], ss[64];
    if (flag_given(given, "lr-schedule") &&
        lr_schedule_parse(&b, o->lr_schedule, why, sizeof why) == 0) {
        lr_schedule_format(&a, ss, sizeof ss);
        lr_schedule_format(&b, gs, sizeof gs);
        if (strcmp(gs, ss)) {
            snprintf(err, errlen, "--lr-schedule %s contradicts the saved training state's %s in %s",
                     gs, ss, path);
            st->usage_error = 1;
            return -1;
        }
    }
    if (flag_given(given, "warmup-epochs") && o->warmup_epochs != warm)
        return contradiction(st, err, errlen, path, "warmup-epochs", o->warmup_epochs, (double)warm);
    if (flag_given(given, "label-smoothing") && o->label_smoothing != eps)
        return contradiction(st, err, errlen, path, "label-smoothing", o->label_smoothing, eps);
    lr_schedule_format(&a, st->schedule_spec, sizeof st->schedule_spec);
    o->lr_schedule = st->schedule_spec;
    o->warmup_epochs = (int)warm;
    o->label_smoothing = eps;
    st->schedule_epochs = (int)horizon;
    st->best_accuracy = best;
    long long best_epoch = 0;
    if (ckpt_find(c, "best_epoch") >= 0 &&
        (get_int(c, "best_epoch", &best_epoch) || best_epoch < 0 || best_epoch > 1000000)) {
        snprintf(err, errlen, "%s: training state is damaged: its best_epoch", path);
        return -1;
    }
    st->best_epoch = (int)best_epoch;
    return 0;
}

int train_state_read(train_state *st, const char *path, train_config *o,
                     const char *const *given, char *err, size_t errlen) {
    if (ckpt_read(&st->file, path, err, errlen) != 0) return -1;
    const ckpt *c = &st->file;
    int f = ckpt_find(c, "cltrain.format");
    const char *fmt = f >= 0 && c->e[f].kind == CKPT_STRING ? c->e[f].sval : "";
    size_t plen = strlen(state_prefix);
    char *end = NULL;
    long version = strncmp(fmt, state_prefix, plen) ? 0 : strtol(fmt + plen, &end, 10);
    if (version < 1 || !end || *end) {
        snprintf(err, errlen, "%s: not a cltrain training state (written by --checkpoint); "
                              "use --weights for model weights", path);
        return -1;
    }
    if (version > STATE_VERSION) {
        snprintf(err, errlen, "%s: training state version %ld is newer than this cltrain reads "
                              "(1 to %d); resume it with the cltrain that wrote it", path,
                 version, STATE_VERSION);
        return -1;
    }
    int_arg ints[INT_ARGS];
    int_args_of(o, ints);
    for (size_t i = 0; i < INT_ARGS; i++) {
        long long v;
        char key[64];
        snprintf(key, sizeof key, "args.%s", ints[i].flag);
        if (get_int(c, key, &v) != 0) {
            snprintf(err, errlen, "%s: training state lacks '%s'", path, key);
            return -1;
        }
        if (v < ints[i].lo || v > ints[i].hi) {
            snprintf(err, errlen, "%s: training state is damaged: '%s' is %lld, outside %d..%d",
                     path, key, v, ints[i].lo, ints[i].hi);
            return -1;
        }
        if (flag_given(given, ints[i].flag) && *ints[i].field != v && ints[i].names) {
            snprintf(err, errlen, "--%s %s contradicts the saved training state's %s in %s",
                     ints[i].flag, ints[i].names[*ints[i].field - ints[i].lo],
                     ints[i].names[v - ints[i].lo], path);
            st->usage_error = 1;
            return -1;
        }
        if (flag_given(given, ints[i].flag) && *ints[i].field != v)
            return contradiction(st, err, errlen, path, ints[i].flag, *ints[i].field, v);
        *ints[i].field = (int)v;
    }
    long long replicas;
    st->replicas = get_int(c, "args.replicas", &replicas) == 0 ? (int)replicas : 1;
    long long shuffle, seed, epochs, epoch, batch, step, rcount;
    double lr, mom, wd, rloss;
    if (get_int(c, "args.shuffle", &shuffle) || get_int(c, "args.seed", &seed) ||
        get_int(c, "args.epochs", &epochs) || get_int(c, "epoch", &epoch) ||
        get_int(c, "batch", &batch) || get_int(c, "global_step", &step) ||
        get_int(c, "running_count", &rcount) || get_float(c, "args.lr", &lr) ||
        get_float(c, "args.momentum", &mom) || get_float(c, "args.weight-decay", &wd) ||
        get_float(c, "running_loss", &rloss) || shuffle < 0 || shuffle > 1 || seed < 0 ||
        epochs < 1 || epochs > 1000000 || epoch < 0 || epoch > epochs || batch < 0 ||
        batch > 2000000000 || step < 0 || rcount < 0 || rcount > 2000000000 || lr < 0 ||
        lr > 1e6 || mom < 0 || mom > 1 || wd < 0 || wd > 1e6) {
        snprintf(err, errlen, "%s: training state is incomplete or damaged", path);
        return -1;
    }
    if (flag_given(given, "no-shuffle") && shuffle) {
        snprintf(err, errlen, "--no-shuffle contradicts the saved training state in %s, "
                              "which shuffles", path);
        st->usage_error = 1;
        return -1;
    }
    if (flag_given(given, "seed") && o->seed != seed)
        return contradiction(st, err, errlen, path, "seed", (double)o->seed, (double)seed);
    const struct { const char *flag; double given, saved; } floats[] = {
        { "lr", o->lr, lr }, { "momentum", o->momentum, mom },
        { "weight-decay", o->weight_decay, wd },
    };
    for (size_t i = 0; i < sizeof floats / sizeof floats[0]; i++)
        if (flag_given(given, floats[i].flag) && floats[i].given != floats[i].saved)
            return contradiction(st, err, errlen, path, floats[i].flag, floats[i].given,
                                 floats[i].saved);
    if (read_strings(st, path, o, given, err, errlen) != 0) return -1;
    if (read_schedule(st, path, o, given, err, errlen) != 0) return -1;
    if (read_optim_args(st, path, o, given, err, errlen) != 0) return -1;
    if (read_data_args(st, path, o, given, err, errlen) != 0) return -1;
    // Training longer is allowed; asking for less than is done already is a mistake.
    if (flag_given(given, "epochs") && o->epochs < epoch) {
        snprintf(err, errlen, "--epochs %d is fewer than the %lld epochs the training state in "
                              "%s has done", o->epochs, epoch, path);
        st->usage_error = 1;
        return -1;
    }
    if (o->max_steps && o->max_steps < step) {
        snprintf(err, errlen, "--max-steps %d is fewer than the %lld steps the training state "
                              "in %s has taken", o->max_steps, step, path);
        st->usage_error = 1;
        return -1;
    }
    o->shuffle = (int)shuffle;
    o->seed = seed;
    o->lr = lr;
    o->momentum = mom;
    o->weight_decay = wd;
    if (!flag_given(given, "epochs")) o->epochs = (int)epochs;
    st->epoch = (int)epoch;
    st->batch = (int)batch;
    st->global_step = (long)step;
    st->running_loss = rloss;
    st->running_count = (int)rcount;
    return 0;
}

int train_state_check_data(const train_state *st, const char *format, int num_classes,
                           int train_images, const char *path, char *err, size_t errlen) {
    long long k, n;
    if (get_int(&st->file, "num_classes", &k) || get_int(&st->file, "train_images", &n)) {
        snprintf(err, errlen, "%s: training state is incomplete", path);
        return -1;
    }
    char from[1100] = "";
    if (*st->data) snprintf(from, sizeof from, " (--data %s)", st->data);
    if (*st->dataset && strcmp(st->dataset, format)) {
        snprintf(err, errlen, "%s was saved for a %s data set%s; this --data is %s", path,
                 st->dataset, from, format);
        return -1;
    }
    if (k != num_classes || n != train_images) {
        snprintf(err, errlen, "%s was saved for %lld classes and %lld training images%s; this "
                              "data gives %d and %d", path, k, n, from, num_classes,
                 train_images);
        return -1;
    }
    return 0;
}

int train_state_apply(train_state *st, model *m, const char *path, char *err, size_t errlen) {
    int replaced = 0;
    return model_from_ckpt(m, &st->file, "model.", 1, 0, &replaced, path, err, errlen) ? -1 : 0;
}

// "optimizer.<state name>.<parameter name>": torch.optim's state tensors per parameter.
static void state_key(char *key, size_t len, const optim *o, int which, const char *param) {
    snprintf(key, len, "optimizer.%s.%s", optim_state_name(o->cfg.kind, which), param);
}

int train_state_apply_optim(train_state *st, optim *o, const char *path, char *err,
                            size_t errlen) {
    model *m = o->m;
    long long ready = 0, step = -1;
    get_int(&st->file, "momentum_ready", &ready);
    // Files before the optimizer flags hold SGD's momentum_ready only: a step count of 0 or 1
    // says the same to SGD (its first step copies the gradient).
    if (get_int(&st->file, "optimizer.step", &step) != 0) step = ready != 0;
    if (step < 0) {
        snprintf(err, errlen, "%s: training state is damaged: 'optimizer.step'", path);
        return -1;
    }
    o->step = (long)step;
    if (!step) return 0;
    size_t np = m->n_param_floats;
    float *host = calloc((size_t)o->nstate * np + 1, sizeof(float));
    if (!host) { snprintf(err, errlen, "out of host memory"); return -1; }
    for (int w = 0; w < o->nstate; w++)
        for (int i = 0; i < m->nparams; i++) {
            if (!model_param_trainable(m, i)) continue;
            char key[160];
            state_key(key, sizeof key, o, w, m->params[i].name);
            int k = ckpt_find(&st->file, key);
            const ckpt_entry *e = k >= 0 ? &st->file.e[k] : NULL;
            if (!e || e->kind != CKPT_TENSOR || e->dtype != CKPT_F32 ||
                (size_t)e->numel != m->params[i].numel) {
                snprintf(err, errlen, "%s: missing or wrong %s buffer '%s'", path,
                         optim_state_name(o->cfg.kind, w), key);
                free(host);
                return -1;
            }
            memcpy(host + w * np + m->params[i].off, e->data, m->params[i].numel * sizeof(float));
        }
    clrt_write(m->rt, o->state, 0, host, (size_t)o->nstate * np * sizeof(float));
    free(host);
    return 0;
}

int train_state_write(const train_state *st, model *m, const optim *opt, const train_config *o,
                      const char *format, int train_images, const char *path, char *err,
                      size_t errlen) {
    ckpt c;
    ckpt_init(&c);
    char version[64];
    snprintf(version, sizeof version, "%s%d", state_prefix, STATE_VERSION);
    int rc = ckpt_add_string(&c, "cltrain.format", version);
    rc |= model_to_ckpt(m, &c, "model.");
    rc |= ckpt_add_int(&c, "num_classes", m->num_classes);
    float *host = NULL;
    size_t np = m->n_param_floats;
    if (opt->step > 0) {
        host = malloc(((size_t)opt->nstate * np + 1) * sizeof(float));
        if (!host) rc = -1;
        else clrt_read(m->rt, opt->state, 0, host, (size_t)opt->nstate * np * sizeof(float));
        for (int w = 0; host && w < opt->nstate; w++)
            for (int i = 0; i < m->nparams && rc == 0; i++) {
                if (!model_param_trainable(m, i)) continue;
                const model_param *p = &m->params[i];
                int64_t shape[4];
                for (int d = 0; d < p->ndim; d++) shape[d] = p->shape[d];
                char key[160];
                state_key(key, sizeof key, opt, w, p->name);
                rc |= ckpt_add_tensor_f32(&c, key, p->ndim, shape, host + w * np + p->off);
            }
    }
    // SGD's flag as older cltrains read it, and torch's state['step'].
    rc |= ckpt_add_int(&c, "momentum_ready", opt->cfg.kind == OPTIM_SGD && opt->step > 0);
    rc |= ckpt_add_int(&c, "optimizer.step", opt->step);
    rc |= ckpt_add_int(&c, "epoch", st->epoch);
    rc |= ckpt_add_int(&c, "batch", st->batch);
    rc |= ckpt_add_int(&c, "global_step", st->global_step);
    rc |= add_float(&c, "running_loss", st->running_loss);
    rc |= ckpt_add_int(&c, "running_count", st->running_count);
    rc |= ckpt_add_int(&c, "train_images", train_images);
    // The run-shaping integers under the keys train_state_read checks; the class count is the
    // model's.
    train_config saved = *o;
    saved.num_classes = m->num_classes;
    int_arg ints[INT_ARGS];
    int_args_of(&saved, ints);
    for (int i = 0; i < INT_ARGS; i++) {
        char key[64];
        snprintf(key, sizeof key, "args.%s", ints[i].flag);
        rc |= ckpt_add_int(&c, key, *ints[i].field);
    }
    if (o->replicas > 1)  // absent for one device: its files stay as they were
        rc |= ckpt_add_int(&c, "args.replicas", o->replicas);
    rc |= ckpt_add_int(&c, "args.resize", o->resize);
    rc |= add_float(&c, "args.val-split", o->val_split);
    rc |= ckpt_add_int(&c, "args.shuffle", o->shuffle);
    rc |= ckpt_add_int(&c, "args.seed", o->seed);
    rc |= ckpt_add_int(&c, "args.epochs", o->epochs);
    rc |= add_float(&c, "args.lr", o->lr);
    rc |= add_float(&c, "args.momentum", o->momentum);
    rc |= add_float(&c, "args.weight-decay", o->weight_decay);
    rc |= ckpt_add_string(&c, "args.optimizer", optim_kind_name((optim_kind)o->optimizer));
    rc |= ckpt_add_int(&c, "args.nesterov", o->nesterov);
    rc |= ckpt_add_int(&c, "args.accumulate", o->accumulate);
    rc |= add_float(&c, "args.beta1", o->beta1);
    rc |= add_float(&c, "args.beta2", o->beta2);
    rc |= add_float(&c, "args.eps", o->eps);
    rc |= add_float(&c, "args.norm-weight-decay", o->norm_weight_decay);
    rc |= add_float(&c, "args.clip-grad-norm", o->clip_grad_norm);
    rc |= ckpt_add_string(&c, "args.dataset", format);
    rc |= ckpt_add_string(&c, "args.data", o->data ? o->data : "");
    lr_schedule ls;
    char spec[64] = "none", bad[256];
    if (lr_schedule_parse(&ls, o->lr_schedule, bad, sizeof bad) == 0)
        lr_schedule_format(&ls, spec, sizeof spec);
    rc |= ckpt_add_string(&c, "args.lr-schedule", spec);
    rc |= ckpt_add_int(&c, "args.warmup-epochs", o->warmup_epochs);
    rc |= ckpt_add_int(&c, "schedule_epochs", st->schedule_epochs);
    rc |= add_float(&c, "args.label-smoothing", o->label_smoothing);
    rc |= add_float(&c, "best_accuracy", st->best_accuracy);
    if (st->best_epoch > 0)  // --early-stop's (absent otherwise: those files stay as they were)
        rc |= ckpt_add_int(&c, "best_epoch", st->best_epoch);
    free(host);
    char why[1024] = "out of host memory";
    if (rc == 0) rc = ckpt_write(&c, path, why, sizeof why);
    if (rc != 0) snprintf(err, errlen, "--checkpoint %s: %s", path, why);
    ckpt_free(&c);
    return rc ? -1 : 0;
}
