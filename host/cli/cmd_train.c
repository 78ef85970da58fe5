// `cltrain train`: the seed's fine-tuning loop, with checkpoints, resume and partial freezing.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_session.h"
#include "host/cli/progress.h"
#include "host/cli/report.h"
#include "host/cli/run_log.h"
#include "host/cli/startup.h"
#include "common/hash.h"
#include "host/train/loop.h"
#include "host/train/model_meta.h"
#include "host/train/replicas.h"
#include "host/train/schedule.h"
#include "host/train/train_state.h"
#include "host/train/trainer.h"

#include <errno.h>
#include <stdint.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char train_usage[] =
    "usage: cltrain train --data DIR [options]\n"
    "  Fine-tunes a ResNet (cross-entropy; SGD, Adam or AdamW), then evaluates the test split.\n"
    "  --arch resnet18|resnet34|resnet50|resnet101|resnet152   default: what --weights holds,\n"
    "                         else resnet18\n"
    "  --data DIR             CIFAR-10 binary folder or IDX (Fashion-MNIST/MNIST) folder\n"
    "  --dataset auto|cifar10|idx|folder   force the format (default: detected; folder:\n"
    "                         DIR/train/<class>/*.jpg|png|... and DIR/val/ or DIR/test/)\n"
    "  --val-split F          hold out a fraction F of each class of DIR/train/ (or DIR)\n"
    "  --skip-bad             leave out image files that fail their header check when the\n"
    "                         folder is opened, or fail to decode later (each named once; a\n"
    "                         batch that loses one is that much shorter)\n"
    "  --workers N            image decode threads (default: the number of cores)\n"
    "  --weights FILE         start from a .pth/.safetensors state_dict (e.g. torchvision's\n"
    "                         resnet18-f37072fd.pth); an fc of another size is replaced\n"
    "  --non-strict           load --weights even when keys do not fit the model (default:\n"
    "                         strict, as PyTorch's load_state_dict; --strict is accepted)\n"
    "  --num-classes N        default: from the data set\n"
    "  --epochs N (10)  --max-steps N (stop after N optimizer steps in all)\n"
    "  --batch-size N (64)  --lr X (0.001)  --momentum X (0.9)  --weight-decay X (0)\n"
    "  --optimizer sgd|adam|adamw (sgd)   torch.optim's SGD, Adam or AdamW\n"
    "  --nesterov             SGD with Nesterov momentum (--momentum > 0)\n"
    "  --betas B1,B2 (0.9,0.999)  --eps X (1e-8)   Adam and AdamW\n"
    "                         --weight-decay: SGD and Adam add X*w to the gradient (L2),\n"
    "                         AdamW decays the weights (w -= lr*X*w)\n"
    "  --norm-weight-decay X  weight decay of batch-norm weights and biases (default:\n"
    "                         --weight-decay)\n"
    "  --clip-grad-norm X     clip_grad_norm_: scale the gradients to a total norm of at\n"
    "                         most X before each step (the norm goes to --log)\n"
    "  --accumulate N         one optimizer step per N batches, with their mean gradient\n"
    "                         (steps, schedules and checkpoints count optimizer steps)\n"
    "  --image-size S (224)   images are resized to SxS (PIL bilinear, as torchvision)\n"
    "  --resize N             Resize(N) (shorter side) then CenterCrop(image-size)\n"
    "  --normalize none|imagenet (none)  --augment none|flip-crop|rrc-flip (none)\n"
    "  --no-shuffle  --seed N (0)  --train-limit N  --test-limit N (first N images only)\n"
    "  --print-every N (100)  --log FILE.jsonl (one JSON object per step and evaluation;\n"
    "                         at the end, cltrain report writes FILE.html beside it)\n"
    "  --no-report            do not write FILE.html at the end of a run with --log\n"
    "  --save FILE.pth|FILE.safetensors   write the trained model (PyTorch state_dict)\n"
    "  --checkpoint FILE      save the whole training state at each epoch end, at --max-steps\n"
    "                         and on SIGINT/SIGTERM; --checkpoint-every N adds every N steps\n"
    "  --resume FILE          continue a saved training state (bitwise as if uninterrupted):\n"
    "                         rerun the same command with --resume FILE appended; --weights\n"
    "                         is then ignored, --epochs/--max-steps may be raised, and a flag\n"
    "                         that contradicts the saved run is an error\n"
    "  --freeze none|stem|layer1|layer2|layer3|layer4|backbone\n"
    "                         freeze everything up to and including that stage (backbone: all\n"
    "                         but fc): no gradients, no updates, and their batch norms run in\n"
    "                         eval mode, as PyTorch users do with model.eval() on frozen parts\n"
    "  --bn-eval              keep every batch norm in eval mode (running statistics)\n"
    "  --lr-schedule none|step:STEP:GAMMA|cosine   per epoch, as torch's StepLR (the\n"
    "                         tutorial's step:7:0.1) or CosineAnnealingLR to 0 over the run\n"
    "  --warmup-epochs N      linear warm-up from lr/100 first (torchvision's references)\n"
    "  --label-smoothing X    CrossEntropyLoss(label_smoothing=X)\n"
    "  --eval-every-epoch     validation accuracy after every epoch (stdout and --log)\n"
    "  --save-best FILE       keep the model of the best validation accuracy (implies it)\n"
    "  --early-stop N         stop when validation accuracy has not improved for N epochs\n"
    "                         (implies --eval-every-epoch; needs validation data: DIR/val/\n"
    "                         or --val-split F)\n"
    "  --device SPEC          P:D, index, gpu, cpu or part of a name (default $CLTRAIN_DEVICE)\n"
    "  --devices SPEC,SPEC,...  data-parallel over these devices (PyTorch DDP's numbers):\n"
    "                         --batch-size is the global batch, split evenly; under mpirun\n"
    "                         each rank runs its own replicas (one per rank by default, on\n"
    "                         device index = its local rank unless --device/--devices say);\n"
    "                         --devices all-gpus: every GPU of every platform, in the order\n"
    "                         of 'cltrain devices' (all: every device)\n";

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
    stop_signal = sig;
    signal(sig, SIG_DFL);  // a second signal ends the process at once (files stay whole)
}

// Everything one `cltrain train` holds, so its stages are short functions. Zeroed first:
// run_free accepts it at any stage.
typedef struct train_run {
    run_options o;
    unsigned long long given;      // flags on the command line (cmd_flag_given)
    train_state st;                // position, running loss; the file read by --resume
    ckpt weights;                  // the --weights file, read once (empty without)
    dataset ds;
    int ds_open;
    session_skips skips;           // --skip-bad: the files that fail to decode mid-run
    clrt rt;
    ops_ctx ops;                   // the ops on rt (model m's)
    ops_shared shared;             // the GEMM state of each device, for every replica
    model m;
    loader ld;
    trainer tr;
    optim_config opt;              // the optimizer's config; opt.lr follows the schedule
    lr_schedule sched;             // --lr-schedule, --warmup-epochs over the run's horizon
    train_config tcfg;             // o's run-shaping arguments, for the loop and the state
    stepper step;                  // the trainer, or the replicas around it
    train_loop loop;
    clrt_host_buf xb, yb;          // pinned: the fast path for uploads on discrete GPUs
    float *x;                      // (3, B, S, S)
    int32_t *y;                    // (B)
    int *idx;                      // (B) the batch's images' indices in the split
    FILE *logf;
    progress pg;
    char err[2048];
    // Data parallel (world > 1): this process's replicas and the processes of the run.
    comm comm;
    replicas rep;
    int world, local;              // replicas in all, in this process
    char specs_buf[1024], rank_spec[16];
    const char *specs[64];         // (local) --devices, split at commas
    int agreed_rc;                 // a status every process returns (agree)
} train_run;

// ---- validation: flags, the resumed state, the output files ----

// Fails before training when `path` is a folder or its folder cannot take a new file.
static int check_writable(const char *flag, const char *path) {
    if (!path) return 0;
    struct stat sb;
    size_t len = strlen(path);
    if (!len || path[len - 1] == '/' || (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))) {
        fprintf(stderr, "cltrain: error: %s '%s': is a folder, not a file name\n", flag, path);
        return -1;
    }
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *(slash == dir ? slash + 1 : slash) = 0;
    else snprintf(dir, sizeof dir, ".");
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.cltrain-probe.%ld", dir, (long)getpid());
    FILE *f = fopen(probe, "wb");
    if (!f) {
        fprintf(stderr, "cltrain: error: %s %s: folder '%s' is not writable: %s\n", flag, path,
                dir, strerror(errno));
        return -1;
    }
    fclose(f);
    unlink(probe);
    return 0;
}

// --resume: reads the training state and takes the saved run's arguments into r->o (those
// given on the command line are checked against them). 0, or -1 with r->err.
static int read_state(train_run *r) {
    const char *given[65];
    cmd_flags_given(r->given, given, 65);
    train_config c;
    cmd_train_config(&r->o, &c);
    int rc = train_state_read(&r->st, r->o.resume, &c, given, r->err, sizeof r->err);
    cmd_take_train_config(&r->o, &c);
    return rc;
}

// Parses and checks the flags; with --resume, reads the state and takes the saved run's
// arguments. Returns 0 to train, -1 after --help, or an exit status.
static int validate(train_run *r, int argc, char **argv) {
    run_options *o = &r->o;
    run_options_defaults(o);
    int rc = cmd_parse_options(argc, argv, o, CMD_TRAIN, train_usage, &r->given);
    if (rc) return rc;
    if (!o->data) return cli_usage_error(train_usage, "train needs --data DIR");
    if (o->checkpoint_every && !o->checkpoint)
        return cli_usage_error(train_usage, "--checkpoint-every needs --checkpoint FILE");
    if (o->resume && read_state(r)) {
        fprintf(stderr, "cltrain: error: %s\n", r->err);
        return r->st.usage_error ? CLI_EXIT_USAGE : CLI_EXIT_DATA;
    }
    if ((rc = cmd_check_optim_flags(o, r->given, train_usage))) return rc;
    if (o->resume && o->weights) {  // the rerun command line of the run being resumed
        fprintf(stderr, "cltrain: note: --weights %s is ignored: the training state %s holds "
                        "the weights\n", o->weights, o->resume);
        o->weights = NULL;
    }
    if (check_writable("--save", o->save) || check_writable("--checkpoint", o->checkpoint) ||
        check_writable("--log", o->log) || check_writable("--save-best", o->save_best))
        return CLI_EXIT_DATA;
    return 0;
}

// ---- data parallel: processes (MPI), devices, replicas ----

// MPI is started only under a launcher (mpirun sets OMPI_COMM_WORLD_SIZE; PMI_SIZE for
// others), so a plain run never touches it. Ranks other than 0 print nothing on stdout.
static int start_processes(train_run *r) {
    int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE");
    if (comm_init(&r->comm, launched, NULL, NULL, r->err, sizeof r->err)) {
        fprintf(stderr, "cltrain: error: %s\n", r->err);
        return CLI_EXIT_USAGE;
    }
    if (r->comm.rank != 0 && !freopen("/dev/null", "w", stdout)) return CLI_EXIT_DATA;
    return 0;
}

// --devices all-gpus (every GPU device of every platform) or all (every device), in the order
// `cltrain devices` lists them, as P:D specs. 0 (r->local stays 0 when o->devices is no group)
// or an exit status.
static int expand_device_group(train_run *r) {
    const char *name = r->o.devices;
    if (strcasecmp(name, "all-gpus") != 0 && strcasecmp(name, "all") != 0) return 0;
    clrt_devinfo *list = NULL;
    int n = 0, idx[64];
    if (clrt_list_devices(&list, &n, r->err, sizeof r->err) != 0) {
        fprintf(stderr, "cltrain: error: --devices %s: %s\n", name, r->err);
        return CLI_EXIT_USAGE;
    }
    int k = clrt_device_group(list, n, name, idx, 64);
    if (k == 0 || k > 64) {
        free(list);
        if (k == 0)
            fprintf(stderr, "cltrain: error: --devices %s: no GPU among the %d OpenCL device%s "
                            "('cltrain devices' lists them): name them with --devices SPEC,SPEC\n",
                    name, n, n == 1 ? "" : "s");
        else
            fprintf(stderr, "cltrain: error: --devices %s: %d devices, at most 64\n", name, k);
        return CLI_EXIT_USAGE;
    }
    size_t off = 0;
    for (int i = 0; i < k; i++) {
        r->specs[i] = r->specs_buf + off;
        off += (size_t)snprintf(r->specs_buf + off, sizeof r->specs_buf - off, "%d:%d",
                                list[idx[i]].platform, list[idx[i]].device) + 1;
    }
    r->local = k;
    free(list);
    return 0;
}

// The replicas: --devices' list (else one), times the processes. Only rank 0 writes files.
static int split_world(train_run *r) {
    run_options *o = &r->o;
    r->local = 0;
    int group = o->devices ? expand_device_group(r) : 0;
    if (group) return group;
    if (o->devices && !r->local) {  // not a group: SPEC,SPEC,...
        snprintf(r->specs_buf, sizeof r->specs_buf, "%s", o->devices);
        for (char *save = NULL, *t = strtok_r(r->specs_buf, ",", &save); t;
             t = strtok_r(NULL, ",", &save)) {
            if (r->local == (int)(sizeof r->specs / sizeof *r->specs))
                return cli_usage_error(train_usage, "--devices: at most 64 devices");
            r->specs[r->local++] = t;
        }
        if (!r->local) return cli_usage_error(train_usage, "--devices needs SPEC[,SPEC...]");
    } else if (o->devices) {  // a group: expanded above
    } else if (r->comm.size > 1 && !o->device && !getenv("CLTRAIN_DEVICE")) {
        r->local = 1;
        snprintf(r->rank_spec, sizeof r->rank_spec, "%d", r->comm.local_rank);
        r->specs[0] = o->device = r->rank_spec;  // one device per rank of a host
    } else {
        r->local = 1;
        r->specs[0] = o->device;
    }
    r->world = r->local * r->comm.size;
    if (o->batch_size % r->world)
        return cli_usage_error(train_usage, "--batch-size %d is not a multiple of the %d "
                               "replicas (devices x processes): each takes an equal share",
                               o->batch_size, r->world);
    if (r->comm.rank != 0) o->log = o->save = o->checkpoint = o->save_best = NULL;
    o->replicas = r->world;
    int saved = o->resume ? r->st.replicas : r->world;
    if (saved != r->world) {  // the shards, hence the numbers, depend on the world size
        fprintf(stderr, "cltrain: error: --resume %s was trained by %d replica%s and this run "
                        "has %d (devices x processes): resume with the same number\n",
                o->resume, saved, saved > 1 ? "s" : "", r->world);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

// The other replicas of this process, each on its own device (replica 0's state reaches
// them, and every process, once every process has set up: cmd_train).
static int set_up_replicas(train_run *r) {
    const run_options *o = &r->o;
    int rc = replicas_init(&r->rep, &r->tr, &r->comm, r->local, o->image_size, r->err,
                           sizeof r->err);
    for (int i = 1; rc == 0 && i < r->local; i++) {
        clrt rt;
        ops_ctx ops;
        clrt_options ro = { .device_spec = r->specs[i] };
        rc = cli_runtime_init(&rt, &ops, &r->shared, &ro, r->err, sizeof r->err);
        if (rc == 0) rc = replicas_add(&r->rep, i, &ops, r->err, sizeof r->err);
    }
    double mb = cli_ddp_bucket_mb();
    if (rc == 0 && mb == -2) {
        snprintf(r->err, sizeof r->err, "CLTRAIN_DDP_BUCKET_MB='%s' is not a size in MiB >= 0 "
                 "(0: one all-reduce after backward)", getenv("CLTRAIN_DDP_BUCKET_MB"));
        rc = CLI_EXIT_USAGE;
    }
    if (rc == 0 && mb >= 0) rc = replicas_set_buckets(&r->rep, mb, r->err, sizeof r->err);
    return rc;  // replicas_sync_state after agree: set-up holds no collective call
}

// Ranks started with other arguments than rank 0's would train other runs and wait on each
// other for ever: refuse at once, naming the rank.
static int same_arguments(train_run *r, int argc, char **argv) {
    if (r->comm.size <= 1) return 0;
    uint64_t h = UTIL_HASH_INIT, h0;  // the arguments and their ends
    for (int i = 1; i < argc; i++) h = util_hash_bytes(h, argv[i], strlen(argv[i]) + 1);
    h0 = h;
    comm_broadcast(&r->comm, &h0, sizeof h0, 0);
    int who, differ = comm_max_int(&r->comm, h0 != h, &who);
    if (!differ) return 0;
    if (r->comm.rank == 0)
        fprintf(stderr, "cltrain: error: rank %d of %d was started with other arguments than "
                        "rank 0: every rank must run the same command line\n", who,
                r->comm.size);
    return CLI_EXIT_USAGE;
}

// Every process learns whether one failed to set up, and the failing rank is named.
static int agree(train_run *r, int rc) {
    if (r->comm.size <= 1) return rc;
    int who, worst = comm_max_int(&r->comm, rc, &who);
    r->agreed_rc = worst;
    if (worst && !rc)
        fprintf(stderr, "cltrain: error: rank %d of %d failed to start (its message is above); "
                        "stopping\n", who, r->comm.size);
    return worst ? worst : 0;
}

// ---- set-up: data, device, model, loader, starting weights ----

// One image whose layer4 output is 1x1 gives a training batch norm one value per channel,
// which PyTorch refuses too ("Expected more than 1 value per channel"): say so now, not after
// an epoch of work.
static int check_last_batch(train_run *r) {
    const run_options *o = &r->o;
    int last = r->ld.total % o->batch_size ? r->ld.total % o->batch_size : o->batch_size;
    // Each replica trains on its share of the batch (of the padded epoch: a multiple of W).
    if (o->bn_eval || o->freeze >= MODEL_FREEZE_BACKBONE || model_bn_values(&r->m, last / r->world) >= 2) return 0;
    snprintf(r->err, sizeof r->err, "%d training images in batches of %d leave a batch of 1 "
             "image, and at --image-size %d batch norm cannot train on it: change --batch-size "
             "or --train-limit, or use a larger --image-size", r->ld.n, o->batch_size,
             o->image_size);
    return CLI_EXIT_USAGE;
}

// Between the plan and the starting weights (setup_spec.after_plan): the loader (the device
// limits are checked before its host batch buffers), the resumed state's data, the last batch.
static int before_weights(void *ctx, model *m, char *err, size_t errlen) {
    train_run *r = ctx;
    const run_options *o = &r->o;
    (void)m;  // r->m
    loader_config lc;
    session_train_loader(o, &lc);
    session_skips_attach(&r->skips, 0, &lc);
    if (loader_init(&r->ld, &r->ds.train, &lc, err, errlen) != 0) return CLI_EXIT_DATA;
    if (o->resume && train_state_check_data(&r->st, r->ds.format, r->m.num_classes, r->ld.n,
                                            o->resume, err, errlen))
        return CLI_EXIT_DATA;
    return check_last_batch(r);
}

// --skip-bad's warning for a file that failed to decode (session_skips): over the bar, and
// once, by rank 0 (every rank reads the same files: same_batch).
static void print_skip(void *ctx, const char *line) {
    train_run *r = ctx;
    if (r->comm.rank == 0) progress_printf(&r->pg, stderr, "%s", line);
}

// Whether the split evaluated after each epoch is validation data (held out of DIR/train/ by
// --val-split, or DIR/val/), which --early-stop may choose a model on; not a test split.
static int has_validation(const train_run *r) {
    if (strcmp(r->ds.format, "folder") != 0) return 0;
    if (r->o.val_split > 0) return 1;
    char val[4200];
    struct stat sb;
    snprintf(val, sizeof val, "%s/val", r->o.data);
    return stat(val, &sb) == 0 && S_ISDIR(sb.st_mode);
}

// Returns 0 or an exit status with the message in r->err.
static int set_up(train_run *r) {
    const run_options *o = &r->o;
    char *err = r->err;
    size_t errlen = sizeof r->err;
    if (session_open_data(&r->ds, o, err, errlen) != 0) return CLI_EXIT_DATA;
    r->ds_open = 1;
    if (o->early_stop && !has_validation(r)) {
        snprintf(err, errlen, "--early-stop %d needs validation data: an image folder with "
                 "DIR/val/ beside DIR/train/, or --val-split F (the test split does not choose "
                 "the model)", o->early_stop);
        return CLI_EXIT_USAGE;
    }
    if (session_skips_init(&r->skips, &r->ds, err, errlen) != 0) return CLI_EXIT_DATA;
    r->skips.print = print_skip;
    r->skips.print_ctx = r;
    int K = o->num_classes ? o->num_classes : r->ds.num_classes;
    if (K < r->ds.num_classes) {
        snprintf(err, errlen, "--num-classes %d but the data set has labels up to %d", K,
                 r->ds.num_classes - 1);
        return CLI_EXIT_USAGE;
    }
    clrt_options ro = { .device_spec = r->local > 1 || o->devices ? r->specs[0] : o->device };
    int rc = cli_runtime_init(&r->rt, &r->ops, &r->shared, &ro, err, errlen);
    if (rc == 0 && session_read_weights(&r->weights, o, err, errlen) != 0) rc = CLI_EXIT_DATA;
    // The model's starting point: initialised from --seed, then --weights or the resumed state.
    setup_spec spec = cli_setup_spec(o, o->resume ? &r->st.file : o->weights ? &r->weights : NULL,
                                     o->weights ? &r->weights : NULL, K,
                                     o->batch_size / r->world);
    spec.after_plan = before_weights;
    spec.after_plan_ctx = r;
    spec.freeze = o->freeze;
    spec.bn_eval = o->bn_eval;
    spec.label_smoothing = (float)o->label_smoothing;
    spec.init_weights = 1;
    if (rc == 0) rc = setup_model(&r->m, &r->ops, &spec, err, errlen);
    ckpt_free(&r->weights);  // loaded: its host copy is not needed any more
    if (rc == 0 && o->resume && train_state_apply(&r->st, &r->m, o->resume, err, errlen))
        rc = CLI_EXIT_DATA;
    if (rc) return rc;
    trainer_init(&r->tr, &r->m);
    session_optim_config(o, &r->opt);
    if (trainer_set_optim(&r->tr, &r->opt, err, errlen)) return CLI_EXIT_DATA;
    if (o->resume && train_state_apply_optim(&r->st, &r->tr.opt, o->resume, err, errlen))
        return CLI_EXIT_DATA;
    if (r->world > 1 && (rc = set_up_replicas(r))) return rc;
    lr_schedule_parse(&r->sched, o->lr_schedule, err, errlen);  // checked with the flags
    r->sched.warmup = o->warmup_epochs;
    if (!r->st.schedule_epochs) r->st.schedule_epochs = o->epochs;  // new run, or a version 2 state
    r->sched.epochs = r->st.schedule_epochs;
    if (o->log && !(r->logf = fopen(o->log, o->resume ? "a" : "w"))) {
        snprintf(err, errlen, "--log %s: %s", o->log, strerror(errno));
        return CLI_EXIT_DATA;
    }
    size_t S = (size_t)o->image_size;
    r->x = clrt_host_alloc(&r->rt, &r->xb, 3 * (size_t)o->batch_size * S * S * sizeof(float));
    r->y = clrt_host_alloc(&r->rt, &r->yb, (size_t)o->batch_size * sizeof(int32_t));
    if (!(r->idx = malloc((size_t)o->batch_size * sizeof(int)))) {
        snprintf(err, errlen, "out of memory for a batch of %d", o->batch_size);
        return CLI_EXIT_DATA;
    }
    return 0;
}

static void run_free(train_run *r) {
    replicas_free(&r->rep);
    if (r->logf) fclose(r->logf);
    clrt_host_free(&r->rt, &r->xb);
    clrt_host_free(&r->rt, &r->yb);
    trainer_free(&r->tr);
    loader_free(&r->ld);
    model_free(&r->m);
    clrt_free(&r->rt);
    ops_shared_free(&r->shared);   // after every replica's runtime
    free(r->idx);
    session_skips_free(&r->skips);
    if (r->ds_open) dataset_free(&r->ds);
    train_state_free(&r->st);
    ckpt_free(&r->weights);
}

// ---- what the loop reports (train_sink): the --log records, the bar, the seed's lines ----

static int save_model(train_run *r, model *m, const char *path);

static void on_epoch_start(void *ctx, int epoch, int first_batch, double lr) {
    train_run *r = ctx;
    progress_start_epoch(&r->pg);
    if (r->logf && first_batch == 0) run_log_epoch(r->logf, epoch + 1, lr);
}

static void on_step(void *ctx, int epoch, int b, int batches, long global_step, float loss,
                    double lr, double ips, float grad_norm) {
    train_run *r = ctx;
    if (r->logf)
        run_log_step(r->logf, epoch + 1, global_step, loss, lr, ips, r->o.clip_grad_norm > 0,
                     grad_norm);
    progress_update(&r->pg, epoch + 1, b + 1, batches, loss, ips);
}

static void on_running_loss(void *ctx, int epoch, int b, double loss) {
    train_run *r = ctx;
    progress_printf(&r->pg, stdout, "[Epoch %d, Batch %d] loss: %.3f\n", epoch + 1, b + 1, loss);
}

static void on_epoch_end(void *ctx, int epoch) {
    train_run *r = ctx;
    (void)epoch;
    progress_keep(&r->pg);
}

// The validation after an epoch ("val") or the test accuracy at the end ("test").
static void on_evaluation(void *ctx, int epochs, const char *what, long total, double acc,
                          int best, double lr, const eval_stats *st) {
    train_run *r = ctx;
    if (strcmp(what, "val") == 0) {
        if (r->logf) run_log_evaluation(r->logf, epochs, "val", &r->ds, &r->ds.test, st);
        progress_printf(&r->pg, stdout, "[Epoch %d] validation accuracy on %ld images: "
                        "%.2f%%%s\n", epochs, total, acc, best ? " (best so far)" : "");
        if (r->logf) run_log_val_accuracy(r->logf, epochs, acc, lr);
        return;
    }
    printf("Accuracy of the network on the %ld test images: %.2f%%\n", total, acc);
    if (r->logf) {
        run_log_test_accuracy(r->logf, epochs, acc);
        run_log_evaluation(r->logf, epochs, "test", &r->ds, &r->ds.test, st);
    }
}

static int on_save_best(void *ctx) {
    train_run *r = ctx;
    return save_model(r, &r->m, r->o.save_best) ? CLI_EXIT_DATA : 0;
}

static void on_warning(void *ctx, const char *line) {
    train_run *r = ctx;
    progress_printf(&r->pg, stderr, "%s", line);
}

static void on_error(void *ctx, const char *msg) {
    train_run *r = ctx;
    progress_error(&r->pg, "%s", msg);
}

// ---- the loop (host/train/loop.h) ----

// The loop over this run's model, data and step, reporting to the functions above.
static void start_loop(train_run *r) {
    const run_options *o = &r->o;
    cmd_train_config(o, &r->tcfg);
    stepper_init(&r->step, &r->tr, r->world > 1 ? &r->rep : NULL);
    r->loop = (train_loop){
        .cfg = &r->tcfg, .print_every = o->print_every, .checkpoint = o->checkpoint,
        .checkpoint_every = o->checkpoint_every, .eval_every_epoch = o->eval_every_epoch,
        .save_best = o->save_best != NULL, .early_stop = o->early_stop, .format = r->ds.format, .st = &r->st, .m = &r->m,
        .tr = &r->tr, .step = &r->step, .ld = &r->ld, .ds = &r->ds, .skips = &r->skips,
        .comm = &r->comm, .world = r->world, .x = r->x, .y = r->y, .idx = r->idx,
        .opt = r->opt, .sched = r->sched, .stop_signal = &stop_signal,
        .sink = { .ctx = r, .epoch_start = on_epoch_start, .step = on_step,
                  .running_loss = on_running_loss, .epoch_end = on_epoch_end,
                  .evaluation = on_evaluation, .save_best = on_save_best,
                  .warning = on_warning, .error = on_error },
    };
    session_eval_loader(o, &r->loop.eval_lc);
}

static int run_training(train_run *r) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    progress_init(&r->pg, stderr);
    if (r->comm.rank != 0) r->pg.tty = 0;  // only rank 0 draws the bar
    start_loop(r);
    int rc = train_loop_run(&r->loop);
    if (r->loop.agreed_rc) r->agreed_rc = r->loop.agreed_rc;
    progress_clear(&r->pg);
    if (rc == 0 && r->loop.early_stopped && r->st.epoch < r->o.epochs && r->comm.rank == 0)
        printf("Early stop after epoch %d: no better validation accuracy for %d epoch%s; the "
               "best, %.2f%%, was at epoch %d%s%s%s\n", r->st.epoch, r->o.early_stop,
               r->o.early_stop == 1 ? "" : "s", r->st.best_accuracy, r->st.best_epoch,
               r->o.save_best ? " (its model is in " : "", r->o.save_best ? r->o.save_best : "",
               r->o.save_best ? ")" : "");
    if (stop_signal && rc == 0) {
        if (r->comm.rank == 0)  // every rank stopped after the same step; rank 0 saved
            fprintf(stderr, "cltrain: interrupted by signal %d after step %ld%s%s\n",
                    (int)stop_signal, r->st.global_step,
                    r->o.checkpoint ? "; training state saved to " : "",
                    r->o.checkpoint ? r->o.checkpoint : "");
        rc = stop_signal == SIGINT ? 130 : 143;
    }
    return rc;
}

// ---- after training: the model file and the test accuracy ----

// The state_dict, and for `predict` the class names and the eval transform (model_meta.h:
// where PyTorch does not look).
static int save_model(train_run *r, model *m, const char *path) {
    ckpt c;
    ckpt_init(&c);
    char err[1024] = "out of memory";
    model_meta meta = { .num_classes = m->num_classes, .image_size = r->o.image_size,
                        .resize = r->o.resize, .normalize = r->o.normalize };
    snprintf(meta.arch, sizeof meta.arch, "%s", m->arch);
    if (r->ds.num_classes == m->num_classes) meta.classes = r->ds.class_names;
    int rc = model_to_ckpt(m, &c, "") != 0 ? -1 : 0;
    if (rc == 0) rc = model_meta_save(&meta, path, &c, 0, err, sizeof err);
    if (rc == 0) rc = ckpt_write(&c, path, err, sizeof err);
    if (rc == 0) rc = model_meta_save(&meta, path, &c, 1, err, sizeof err);
    if (rc != 0) fprintf(stderr, "cltrain: error: --save %s: %s\n", path, err);
    ckpt_free(&c);
    return rc;
}

// The test accuracy: the loop's one evaluation (on_evaluation prints and logs it).
static int evaluate(train_run *r) {
    if (train_loop_evaluate(&r->loop, r->st.epoch, "test", NULL)) {
        fprintf(stderr, "cltrain: error: %s\n", r->loop.err);
        return CLI_EXIT_DATA;
    }
    session_report_skipped(&r->ds, &r->skips);
    return 0;
}

// --log RUN.jsonl: RUN.html beside it (report.h), unless --no-report. A report that cannot be
// written costs a warning, not the run: the model and the log are already saved.
static void write_report(train_run *r) {
    if (!r->logf || r->o.no_report) return;
    fclose(r->logf);
    r->logf = NULL;
    char out[4096], err[1024] = "";
    report_default_path(r->o.log, out, sizeof out);
    if (report_write(r->o.log, out, err, sizeof err) == 0) printf("report: %s\n", out);
    else fprintf(stderr, "cltrain: warning: the report was not written: %s\n", err);
}

static int finish(train_run *r) {
    if (r->comm.rank != 0) return 0;  // only replica 0 prints and writes files
    printf("Finished Training\n");
    fflush(stdout);
    if (r->o.save && save_model(r, &r->m, r->o.save) != 0) return CLI_EXIT_DATA;
    int rc = evaluate(r);
    if (rc == 0) write_report(r);
    return rc;
}

int cmd_train(int argc, char **argv) {
    train_run r;
    memset(&r, 0, sizeof r);
    train_state_init(&r.st);
    int rc = start_processes(&r);
    if (rc == 0) rc = same_arguments(&r, argc, argv);
    if (rc == 0) rc = validate(&r, argc, argv);
    if (rc == 0) rc = split_world(&r);
    if (rc == 0 && (rc = set_up(&r)) != 0) fprintf(stderr, "cltrain: error: %s\n", r.err);
    rc = agree(&r, rc);
    if (rc == 0 && r.world > 1) replicas_sync_state(&r.rep);
    if (rc == 0) rc = run_training(&r);
    if (rc == 0) rc = finish(&r);
    run_free(&r);
    // A rank that fails alone (a file that fails to decode on its host) while the others wait
    // in a collective exits without MPI_Finalize: mpirun then ends the whole job at once.
    // Failures every rank agreed on (set-up, non-finite steps, signals) finalise normally.
    if (rc == 0 || rc == 130 || rc == 143 || r.agreed_rc) comm_free(&r.comm);
    return rc < 0 ? 0 : rc;
}
