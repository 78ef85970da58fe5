// `cltrain train`: the seed's fine-tuning loop, with checkpoints, resume and partial freezing.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_options.h"
#include "host/cli/progress.h"
#include "host/cli/report.h"
#include "host/cli/run_log.h"
#include "host/cli/startup.h"
#include "common/hash.h"
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
    model m;
    loader ld;
    trainer tr;
    optim_config opt;              // the optimizer's config; opt.lr follows the schedule
    lr_schedule sched;             // --lr-schedule, --warmup-epochs over the run's horizon
    double lr_now;                 // this epoch's lr (opt.lr)
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
    if (o->resume && train_state_read(&r->st, o->resume, o, r->given, cmd_flag_given, r->err,
                                      sizeof r->err)) {
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
        clrt_options ro = { .device_spec = r->specs[i] };
        rc = cli_runtime_init(&rt, &ro, r->err, sizeof r->err);
        if (rc == 0) rc = replicas_add(&r->rep, i, &rt, r->err, sizeof r->err);
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

// A signal seen by any process stops all of them after the same step.
static int any_stop_signal(train_run *r) {
    if (r->comm.size <= 1) return stop_signal != 0;
    int sig = comm_max_int(&r->comm, (int)stop_signal, NULL);
    if (sig && !stop_signal) stop_signal = sig;
    return sig != 0;
}

// ---- set-up: data, device, model, loader, starting weights ----

// One image whose layer4 output is 1x1 gives a training batch norm one value per channel,
// which PyTorch refuses too ("Expected more than 1 value per channel"): say so now, not after
// an epoch of work.
static int check_last_batch(train_run *r) {
    const run_options *o = &r->o;
    int last = r->ld.total % o->batch_size ? r->ld.total % o->batch_size : o->batch_size;
    // Each replica trains on its share of the batch (of the padded epoch: a multiple of W).
    if (o->bn_eval || o->freeze >= 4 || trainer_bn_values(&r->m, last / r->world) >= 2) return 0;
    snprintf(r->err, sizeof r->err, "%d training images in batches of %d leave a batch of 1 "
             "image, and at --image-size %d batch norm cannot train on it: change --batch-size "
             "or --train-limit, or use a larger --image-size", r->ld.n, o->batch_size,
             o->image_size);
    return CLI_EXIT_USAGE;
}

// The model's starting point: initialised from --seed, then --weights or the resumed state.
static int start_weights(train_run *r) {
    const run_options *o = &r->o;
    r->m.freeze = o->freeze;
    r->m.bn_eval = o->bn_eval;
    r->m.label_smoothing = (float)o->label_smoothing;
    model_init_weights(&r->m, (uint64_t)o->seed);
    if (o->weights) {
        int rc = session_load_weights(&r->m, &r->weights, o, r->err, sizeof r->err);
        ckpt_free(&r->weights);  // loaded: its host copy is not needed any more
        return rc;
    }
    if (o->resume && train_state_apply(&r->st, &r->m, o->resume, r->err, sizeof r->err))
        return CLI_EXIT_DATA;
    return 0;
}

// --skip-bad's warning for a file that failed to decode (session_skips): over the bar, and
// once, by rank 0 (every rank reads the same files: same_batch).
static void print_skip(void *ctx, const char *line) {
    train_run *r = ctx;
    if (r->comm.rank == 0) progress_printf(&r->pg, stderr, "%s", line);
}

// Returns 0 or an exit status with the message in r->err.
static int set_up(train_run *r) {
    const run_options *o = &r->o;
    char *err = r->err;
    size_t errlen = sizeof r->err;
    if (session_open_data(&r->ds, o, err, errlen) != 0) return CLI_EXIT_DATA;
    r->ds_open = 1;
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
    int rc = cli_runtime_init(&r->rt, &ro, err, errlen);
    // The device limits are checked (resnet_plan) before the loader's host batch buffers.
    model_arch cfg;
    if (rc == 0 && session_read_weights(&r->weights, o, err, errlen) != 0) rc = CLI_EXIT_DATA;
    if (rc == 0)
        rc = session_arch(&cfg, o, o->resume ? &r->st.file : o->weights ? &r->weights : NULL, K,
                          err, errlen);
    if (rc == 0) rc = model_init_arch(&r->m, &r->rt, &cfg, err, errlen);
    if (rc == 0) rc = session_plan(&r->m, o->batch_size / r->world, o->image_size, err, errlen);
    if (rc) return rc;
    loader_config lc;
    session_train_loader(o, &lc);
    session_skips_attach(&r->skips, 0, &lc);
    if (loader_init(&r->ld, &r->ds.train, &lc, err, errlen) != 0) return CLI_EXIT_DATA;
    if (o->resume && train_state_check_data(&r->st, r->ds.format, K, r->ld.n, o->resume, err,
                                            errlen))
        return CLI_EXIT_DATA;
    if ((rc = check_last_batch(r)) || (rc = start_weights(r))) return rc;
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
    free(r->idx);
    session_skips_free(&r->skips);
    if (r->ds_open) dataset_free(&r->ds);
    train_state_free(&r->st);
    ckpt_free(&r->weights);
}

// ---- logging and the seed's printed lines ----

// grad_norm: clip_grad_norm_'s total norm before clipping (--clip-grad-norm only).
static void log_step(train_run *r, int epoch, float loss, double ips, float grad_norm) {
    if (!r->logf) return;
    fprintf(r->logf, "{\"epoch\":%d,\"step\":%ld,\"loss\":%.9g,\"lr\":%g,"
                     "\"images_per_s\":%.2f", epoch + 1, r->st.global_step, loss, r->lr_now,
            ips);
    if (r->o.clip_grad_norm > 0) fprintf(r->logf, ",\"grad_norm\":%.9g", grad_norm);
    fprintf(r->logf, "}\n");
    fflush(r->logf);
}

// The seed: running_loss / 100 over the last print_every batches (over the steps taken, when
// --skip-bad emptied a batch of them; nothing when it emptied all).
static void print_running_loss(train_run *r, int epoch, int b) {
    if ((b + 1) % r->o.print_every) return;
    int k = r->st.running_count, every = r->o.print_every;
    if (k > 0)
        progress_printf(&r->pg, stdout, "[Epoch %d, Batch %d] loss: %.3f\n", epoch + 1, b + 1,
                        r->st.running_loss / (k < every ? k : every));
    r->st.running_loss = 0;
    r->st.running_count = 0;
}

// ---- checkpoints ----

// Saves the training state when --checkpoint asks for it now. Returns 0 or CLI_EXIT_DATA.
static int maybe_checkpoint(train_run *r, int at_end, int stopping) {
    const run_options *o = &r->o;
    if (!o->checkpoint) return 0;
    if (!stopping && !at_end &&
        !(o->checkpoint_every && r->st.global_step % o->checkpoint_every == 0))
        return 0;
    if (train_state_write(&r->st, &r->m, &r->tr.opt, o, r->ds.format, r->ld.n, o->checkpoint, r->err,
                          sizeof r->err) == 0)
        return 0;
    progress_error(&r->pg, "%s", r->err);
    return CLI_EXIT_DATA;
}

// ---- the end of an epoch: --eval-every-epoch, --save-best ----

static int save_model(train_run *r, model *m, const char *path);

// trainer_evaluate of the test split with the confusion matrix and worst mistakes in *st
// (eval_stats_free it whatever the result). The number correct, or -1 with r->err.
static long evaluate_split(train_run *r, const loader_config *lc, long *total, eval_stats *st) {
    *total = 0;
    if (eval_stats_init(st, r->m.num_classes)) {
        snprintf(r->err, sizeof r->err, "out of memory");
        return -1;
    }
    return trainer_evaluate(&r->tr, &r->ds.test, lc, total, st, NULL, r->err, sizeof r->err);
}

// Evaluation runs on replica 0 alone (planned for a shard of the batch) over every image of
// the split once: no padding, so no image counts twice (DistributedSampler's would).
static void eval_loader(train_run *r, loader_config *lc) {
    session_eval_loader(&r->o, lc);
    session_skips_attach(&r->skips, 1, lc);
    if (r->world > 1) lc->batch_size = r->m.max_batch;
}

// Validation accuracy after epoch `epoch` (printed and logged); with --save-best the model is
// written (atomically) when it beats the best so far, which the training state keeps.
static int end_of_epoch(train_run *r, int epoch) {
    if (!r->o.eval_every_epoch && !r->o.save_best) return 0;
    if (r->comm.rank != 0) return 0;  // only replica 0 evaluates, prints and writes
    loader_config lc;
    eval_loader(r, &lc);
    long total = 0;
    eval_stats st;
    long correct = evaluate_split(r, &lc, &total, &st);
    if (correct < 0) {
        progress_error(&r->pg, "%s", r->err);
        return CLI_EXIT_DATA;
    }
    if (r->logf) run_log_evaluation(r->logf, epoch + 1, "val", &r->ds, &r->ds.test, &st);
    eval_stats_free(&st);
    double acc = total ? 100.0 * correct / total : 0.0;
    int best = r->o.save_best && acc > r->st.best_accuracy;
    progress_printf(&r->pg, stdout, "[Epoch %d] validation accuracy on %ld images: %.2f%%%s\n",
                    epoch + 1, total, acc, best ? " (best so far)" : "");
    if (r->logf) {
        fprintf(r->logf, "{\"epoch\":%d,\"val_accuracy\":%.4f,\"lr\":%.9g}\n", epoch + 1, acc,
                r->lr_now);
        fflush(r->logf);
    }
    if (!best) return 0;
    r->st.best_accuracy = acc;
    return save_model(r, &r->m, r->o.save_best) ? CLI_EXIT_DATA : 0;
}

// ---- the loop ----

static int max_steps_done(const train_run *r) {
    return r->o.max_steps && r->st.global_step >= r->o.max_steps;
}

// Books a finished step: counters, log, bar, the seed's line, the position in the data. A
// batch that took no step (ran 0: --skip-bad left too few images) moves the position only.
static void after_step(train_run *r, int epoch, int b, int batches, int ran, float loss,
                       double ips, float grad_norm) {
    train_state *st = &r->st;
    if (ran) {
        st->global_step++;
        st->running_loss += loss;
        st->running_count++;
        log_step(r, epoch, loss, ips, grad_norm);
        progress_update(&r->pg, epoch + 1, b + 1, batches, loss, ips);
    }
    print_running_loss(r, epoch, b);
    int at_end = b + 1 == batches;
    st->epoch = at_end ? epoch + 1 : epoch;
    st->batch = at_end ? 0 : b + 1;
    if (at_end) { st->running_loss = 0; st->running_count = 0; }
}

// A step enqueued whose result is not read yet (train_step_enqueue; with replicas the result
// is taken at once, replicas_step being synchronous).
typedef struct pending_step {
    int b, n;
    int ran;                       // 0: no step for this batch (batch_trains)
    train_status s;
    float loss;
    float grad_norm;               // --clip-grad-norm: the step's total gradient norm
    int micro;                     // --accumulate: a batch added to the group's sums
} pending_step;

// Whether batch b, which --skip-bad may have shortened to n images, gives a step. None left:
// no step (as PyTorch users `continue` past an empty batch). So few that a replica's share
// leaves a training batch norm one value per channel (check_last_batch's rule; PyTorch
// raises "Expected more than 1 value per channel"): no step either, with a warning.
static int batch_trains(train_run *r, int epoch, int b, int n) {
    const run_options *o = &r->o;
    if (n == 0) return 0;
    if (n == o->batch_size || o->bn_eval || o->freeze >= 4) return 1;
    int least = n >= r->world ? n / r->world : 1;  // the smallest share that is not empty
    if (trainer_bn_values(&r->m, least) >= 2) return 1;
    if (r->comm.rank == 0)
        progress_printf(&r->pg, stderr, "cltrain: warning: epoch %d, batch %d: the %d image%s "
                        "that --skip-bad left %s too few for batch norm to train on: no step\n",
                        epoch + 1, b + 1, n, n == 1 ? "" : "s", n == 1 ? "is" : "are");
    return 0;
}

// --accumulate N: batches b with b % N < N - 1 (counted from the epoch's start, so a resumed
// run keeps the groups) only add their gradient; the group's last batch, or the epoch's last,
// takes the optimizer step with the mean over the group.
static int accumulates(const train_run *r, int b, int batches) {
    int N = r->o.accumulate;
    return N > 1 && b % N != N - 1 && b + 1 != batches;
}

static void step_enqueue(train_run *r, pending_step *p, int epoch, int b, int n, int batches) {
    p->b = b;
    p->n = n;
    p->ran = batch_trains(r, epoch, b, n);
    p->s = TRAIN_OK;
    p->loss = 0;
    p->micro = accumulates(r, b, batches);
    if (p->ran && p->micro) {
        if (r->world > 1) replicas_micro(&r->rep, r->x, r->y, n, &r->opt);
        else train_micro_enqueue(&r->tr, r->x, r->y, n, &r->opt);
    }
    if (p->micro) p->ran = 0;  // no step: its batch moves the position only
    if (!p->ran) return;
    if (r->world > 1) {
        p->s = replicas_step(&r->rep, r->x, r->y, n, &r->opt, &p->loss);
        p->grad_norm = r->tr.grad_norm;  // replica 0's, as every replica's
    } else {
        train_step_enqueue(&r->tr, r->x, r->y, n, &r->opt);
    }
}

// Whether the step after p may be enqueued before p's result is booked: only when booking p
// does nothing but the counters, the log and the bar (no checkpoint, no stop, not the end of
// the epoch), so nothing reads the weights between the two. Ranks always take this in step.
static int may_overlap(train_run *r, const pending_step *p, int batches) {
    const run_options *o = &r->o;
    long step = r->st.global_step + 1;  // p's, once booked
    if (p->micro) return 1;  // nothing to read, no step to book
    if (r->world > 1 || stop_signal || p->b + 1 == batches) return 0;
    if (o->max_steps && step >= o->max_steps) return 0;
    return !(o->checkpoint && o->checkpoint_every && step % o->checkpoint_every == 0);
}

// Books step p: its result (stopping on a non-finite one), counters, log, bar; with
// `boundary`, the end of the epoch, the checkpoint and the stop that may follow it.
static int step_finish(train_run *r, int epoch, int batches, pending_step *p, int boundary,
                       double *t_last, int *stopped) {
    if (r->world <= 1 && p->ran) {
        p->s = train_step_result(&r->tr, &p->loss);
        p->grad_norm = r->tr.grad_norm;
    }
    if (p->s != TRAIN_OK) {  // earlier checkpoints and --save stay as they are
        if (r->comm.rank == 0)  // every rank has the same status: rank 0 says it
            progress_error(&r->pg, "non-finite %s (loss %g) at step %ld (epoch %d, batch %d); "
                           "nothing saved; try a lower --lr", train_status_what(p->s), p->loss,
                           r->st.global_step + 1, epoch + 1, p->b + 1);
        return CLI_EXIT_DATA;
    }
    double t = session_now(), ips = p->n / (t - *t_last);
    *t_last = t;
    after_step(r, epoch, p->b, batches, p->ran, p->loss, ips, p->grad_norm);
    if (!boundary || p->micro) return 0;  // a group is never cut: stops wait for its step
    int stopping = max_steps_done(r) || any_stop_signal(r), rc;
    if (p->b + 1 == batches && (rc = end_of_epoch(r, epoch))) return rc;  // before the state
    if ((rc = maybe_checkpoint(r, p->b + 1 == batches, stopping))) return rc;
    if (stopping) *stopped = 1;
    return 0;
}

// With --skip-bad every process must leave the same images out of a batch (each reads the
// files itself): a rank whose files differ from rank 0's would split other shares and take
// other steps, and the collectives would hang. Checked per batch; every rank stops together.
static int same_batch(train_run *r, int epoch, int b, int n) {
    if (r->comm.size <= 1 || !r->o.skip_bad) return 0;
    uint64_t h = util_hash_bytes(UTIL_HASH_INIT, &n, sizeof n), h0;
    h = util_hash_bytes(h, r->idx, (size_t)n * sizeof *r->idx);
    h0 = h;
    comm_broadcast(&r->comm, &h0, sizeof h0, 0);
    int who, differ = comm_max_int(&r->comm, h0 != h, &who);
    if (!differ) return 0;
    if (r->comm.rank == 0)
        progress_error(&r->pg, "rank %d of %d left other images out of epoch %d, batch %d than "
                       "rank 0 (--skip-bad): every rank must read the same files", who,
                       r->comm.size, epoch + 1, b + 1);
    r->agreed_rc = CLI_EXIT_DATA;
    return CLI_EXIT_DATA;
}

// Trains epoch `epoch` from the saved position. Returns 0 or an exit status; *stopped is set
// at --max-steps or a signal. Each step's result is read while the next one runs (no wait
// inside a step), except where booking it saves, evaluates or stops (may_overlap).
static int train_epoch(train_run *r, int epoch, int *stopped) {
    int batches = loader_batches_per_epoch(&r->ld);
    int first = epoch == r->st.epoch ? r->st.batch : 0;
    loader_start_epoch(&r->ld, epoch, first);
    progress_start_epoch(&r->pg);
    r->lr_now = lr_schedule_at(&r->sched, r->o.lr, epoch);
    r->opt.lr = r->lr_now;
    if (r->logf && first == 0) {
        fprintf(r->logf, "{\"epoch\":%d,\"lr\":%.9g}\n", epoch + 1, r->lr_now);
        fflush(r->logf);
    }
    double t_last = session_now();
    int n = 0, got = 0, rc = 0, have = 0;
    pending_step p = { 0 }, next;
    for (int b = first;; b++) {
        if (have && !may_overlap(r, &p, batches)) {  // before the next batch is even read
            have = 0;
            if ((rc = step_finish(r, epoch, batches, &p, 1, &t_last, stopped))) return rc;
            if (*stopped) break;
        }
        if ((got = loader_next_ex(&r->ld, r->x, r->y, r->idx, &n)) <= 0) break;
        if ((rc = same_batch(r, epoch, b, n))) return rc;
        step_enqueue(r, &next, epoch, b, n, batches);
        if (have && (rc = step_finish(r, epoch, batches, &p, 0, &t_last, stopped))) {
            float loss;  // the step behind it was guarded (sticky flags): read and drop it
            if (r->world <= 1 && next.ran) train_step_result(&r->tr, &loss);
            return rc;
        }
        p = next;
        have = 1;
    }
    // Only a file that failed mid-epoch leaves a step unbooked here (the last one of an
    // epoch never overlaps).
    if (have && (rc = step_finish(r, epoch, batches, &p, 1, &t_last, stopped))) return rc;
    if (got < 0) {  // a file that failed mid-run: save the state as SIGTERM does
        int saved = r->o.checkpoint &&
                    train_state_write(&r->st, &r->m, &r->tr.opt, &r->o, r->ds.format, r->ld.n,
                                      r->o.checkpoint, r->err, sizeof r->err) == 0;
        progress_error(&r->pg, "%s%s%s", r->ld.error, saved ? "; training state saved to " : "",
                       saved ? r->o.checkpoint : "");
        return CLI_EXIT_DATA;
    }
    progress_keep(&r->pg);
    return 0;
}

static int train_loop(train_run *r) {
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    progress_init(&r->pg, stderr);
    if (r->comm.rank != 0) r->pg.tty = 0;  // only rank 0 draws the bar
    int stopped = max_steps_done(r), rc = 0;  // a resumed run may be done already
    for (int epoch = r->st.epoch; rc == 0 && epoch < r->o.epochs && !stopped; epoch++)
        rc = train_epoch(r, epoch, &stopped);
    progress_clear(&r->pg);
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

static int evaluate(train_run *r) {
    loader_config lc;
    eval_loader(r, &lc);
    long total = 0;
    eval_stats st;
    long correct = evaluate_split(r, &lc, &total, &st);
    if (correct < 0) {
        fprintf(stderr, "cltrain: error: %s\n", r->err);
        eval_stats_free(&st);
        return CLI_EXIT_DATA;
    }
    double acc = total ? 100.0 * correct / total : 0.0;
    printf("Accuracy of the network on the %ld test images: %.2f%%\n", total, acc);
    if (r->logf) {
        fprintf(r->logf, "{\"epoch\":%d,\"test_accuracy\":%.4f}\n", r->st.epoch, acc);
        run_log_evaluation(r->logf, r->st.epoch, "test", &r->ds, &r->ds.test, &st);
    }
    eval_stats_free(&st);
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
    if (rc == 0) rc = train_loop(&r);
    if (rc == 0) rc = finish(&r);
    run_free(&r);
    // A rank that fails alone (a file that fails to decode on its host) while the others wait
    // in a collective exits without MPI_Finalize: mpirun then ends the whole job at once.
    // Failures every rank agreed on (set-up, non-finite steps, signals) finalise normally.
    if (rc == 0 || rc == 130 || rc == 143 || r.agreed_rc) comm_free(&r.comm);
    return rc < 0 ? 0 : rc;
}
