// `cltrain train`: the seed's fine-tuning loop, with checkpoints, resume and partial freezing.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_options.h"
#include "host/train/train_state.h"
#include "host/cli/startup.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char train_usage[] =
    "usage: cltrain train --data DIR [options]\n"
    "  Fine-tunes a ResNet (SGD with momentum, cross-entropy), then evaluates the test split.\n"
    "  --arch resnet18|resnet34|resnet50|resnet101|resnet152   default: what --weights holds,\n"
    "                         else resnet18\n"
    "  --data DIR             CIFAR-10 binary folder or IDX (Fashion-MNIST/MNIST) folder\n"
    "  --dataset auto|cifar10|idx   force the format (default: detected)\n"
    "  --weights FILE         start from a .pth/.safetensors state_dict (e.g. torchvision's\n"
    "                         resnet18-f37072fd.pth); an fc of another size is replaced\n"
    "  --strict               unknown keys in --weights are errors, not warnings\n"
    "  --num-classes N        default: from the data set\n"
    "  --epochs N (10)  --max-steps N (stop after N optimizer steps in all)\n"
    "  --batch-size N (64)  --lr X (0.001)  --momentum X (0.9)  --weight-decay X (0)\n"
    "  --image-size S (224)   images are resized to SxS (PIL bilinear, as torchvision)\n"
    "  --normalize none|imagenet (none)  --augment none|flip-crop (none)\n"
    "  --no-shuffle  --seed N (0)  --train-limit N  --test-limit N (first N images only)\n"
    "  --print-every N (100)  --log FILE.jsonl (one JSON object per step and evaluation)\n"
    "  --save FILE.pth|FILE.safetensors   write the trained model (PyTorch state_dict)\n"
    "  --checkpoint FILE      save the whole training state at each epoch end, at --max-steps\n"
    "                         and on SIGINT/SIGTERM; --checkpoint-every N adds every N steps\n"
    "  --resume FILE          continue a saved training state (bitwise as if uninterrupted)\n"
    "  --freeze none|stem|layer1|layer2|layer3|layer4|backbone\n"
    "                         freeze everything up to and including that stage (backbone: all\n"
    "                         but fc): no gradients, no updates, and their batch norms run in\n"
    "                         eval mode, as PyTorch users do with model.eval() on frozen parts\n"
    "  --bn-eval              keep every batch norm in eval mode (running statistics)\n"
    "  --device SPEC          P:D, index, gpu, cpu or part of a name (default $CLTRAIN_DEVICE)\n";

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig) {
    stop_signal = sig;
    signal(sig, SIG_DFL);  // a second signal ends the process at once (files stay whole)
}

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

typedef struct progress {
    int tty;
    double t_epoch, t_last;
} progress;

static void progress_update(progress *p, int epoch, int batch, int batches, double loss,
                            double ips) {
    if (!p->tty) return;
    double eta = ips > 0 ? (batches - batch) * (session_now() - p->t_epoch) / (batch ? batch : 1)
                         : 0;
    fprintf(stderr, "\r[epoch %d] %d/%d  loss %.4f  %.1f img/s  ETA %d:%02d   ", epoch, batch,
            batches, loss, ips, (int)eta / 60, (int)eta % 60);
    fflush(stderr);
}

static int save_model(resnet *m, const char *path) {
    ckpt c;
    ckpt_init(&c);
    char err[1024];
    int rc = resnet_to_ckpt(m, &c, "") != 0 ? -1 : ckpt_write(&c, path, err, sizeof err);
    if (rc != 0) fprintf(stderr, "cltrain: error: --save %s: %s\n", path, err);
    ckpt_free(&c);
    return rc;
}

int cmd_train(int argc, char **argv) {
    run_options o;
    run_options_defaults(&o);
    unsigned long long given = 0;
    int rc = cmd_parse_options(argc, argv, &o, CMD_TRAIN, train_usage, &given);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.data) return cli_usage_error(train_usage, "train needs --data DIR");
    if (o.checkpoint_every && !o.checkpoint)
        return cli_usage_error(train_usage, "--checkpoint-every needs --checkpoint FILE");
    if (o.resume && o.weights)
        return cli_usage_error(train_usage, "--resume and --weights exclude each other");
    train_state st;
    train_state_init(&st);
    char err[2048];
    if (o.resume && train_state_read(&st, o.resume, &o, given, cmd_flag_given, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        train_state_free(&st);
        return st.usage_error ? CLI_EXIT_USAGE : CLI_EXIT_DATA;
    }
    if (check_writable("--save", o.save) || check_writable("--checkpoint", o.checkpoint) ||
        check_writable("--log", o.log)) {
        train_state_free(&st);
        return CLI_EXIT_DATA;
    }

    dataset ds;
    if (dataset_open(&ds, o.data, o.dataset, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        train_state_free(&st);
        return CLI_EXIT_DATA;
    }
    int K = o.num_classes ? o.num_classes : ds.num_classes;
    if (K < ds.num_classes) {
        fprintf(stderr, "cltrain: error: --num-classes %d but the data set has labels up to %d\n",
                K, ds.num_classes - 1);
        dataset_free(&ds);
        train_state_free(&st);
        return CLI_EXIT_USAGE;
    }
    clrt rt;
    clrt_options ro = { .device_spec = o.device };
    if ((rc = cli_runtime_init(&rt, &ro, err, sizeof err)) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        dataset_free(&ds);
        train_state_free(&st);
        return rc;
    }
    // The device limits are checked (resnet_plan) before the loader's host batch buffers.
    resnet m;
    loader ld;
    memset(&ld, 0, sizeof ld);
    loader_config lc = { .batch_size = o.batch_size, .image_size = o.image_size,
                         .normalize = o.normalize, .augment = o.augment, .shuffle = o.shuffle,
                         .seed = (uint64_t)o.seed, .limit = o.train_limit };
    resnet_config cfg;
    memset(&m, 0, sizeof m);
    rc = session_arch(&cfg, &o, K, err, sizeof err);
    if (rc == 0) rc = resnet_init(&m, &rt, &cfg, err, sizeof err);
    if (rc == 0) rc = session_plan(&m, o.batch_size, o.image_size, err, sizeof err);
    if (rc == 0 && loader_init(&ld, &ds.train, &lc, err, sizeof err) != 0) rc = CLI_EXIT_DATA;
    if (rc == 0 && o.resume && train_state_check_data(&st, K, ld.n, o.resume, err, sizeof err))
        rc = CLI_EXIT_DATA;
    // One image whose layer4 output is 1x1 gives a training batch norm one value per channel,
    // which PyTorch refuses too ("Expected more than 1 value per channel"): say so now, not
    // after an epoch of work.
    int last = ld.n % o.batch_size ? ld.n % o.batch_size : o.batch_size;
    if (rc == 0 && !o.bn_eval && o.freeze < 4 && last * resnet_final_hw(&m) < 2) {
        snprintf(err, sizeof err, "%d training images in batches of %d leave a batch of 1 image, "
                 "and at --image-size %d batch norm cannot train on it: change --batch-size or "
                 "--train-limit, or use a larger --image-size", ld.n, o.batch_size, o.image_size);
        rc = CLI_EXIT_USAGE;
    }
    if (rc == 0) {
        m.freeze = o.freeze;
        m.bn_eval = o.bn_eval;
        resnet_init_weights(&m, (uint64_t)o.seed);
        if (o.weights) rc = session_load_weights(&m, &o, err, sizeof err);
        else if (o.resume && train_state_apply(&st, &m, o.resume, err, sizeof err) != 0)
            rc = CLI_EXIT_DATA;
    }
    if (rc != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        loader_free(&ld);
        resnet_free(&m);
        clrt_free(&rt);
        dataset_free(&ds);
        train_state_free(&st);
        return rc;
    }
    FILE *logf = NULL;
    if (o.log && !(logf = fopen(o.log, o.resume ? "a" : "w"))) {
        fprintf(stderr, "cltrain: error: --log %s: %s\n", o.log, strerror(errno));
        rc = CLI_EXIT_DATA;
    }

    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    size_t S = (size_t)o.image_size;
    clrt_host_buf xb, yb;  // pinned: the fast path for uploads on discrete GPUs
    float *x = clrt_host_alloc(&rt, &xb, 3 * (size_t)o.batch_size * S * S * sizeof(float));
    int32_t *y = clrt_host_alloc(&rt, &yb, (size_t)o.batch_size * sizeof(int32_t));
    int batches = loader_batches_per_epoch(&ld);
    progress pg = { isatty(2), 0, 0 };
    int stopped = 0;
    for (int epoch = st.epoch; rc == 0 && epoch < o.epochs && !stopped; epoch++) {
        int first = epoch == st.epoch ? st.batch : 0;
        loader_start_epoch(&ld, epoch, first);
        pg.t_epoch = pg.t_last = session_now();
        int n;
        for (int b = first; rc == 0 && (n = loader_next(&ld, x, y)) > 0; b++) {
            session_upload_batch(&m, x, y, n);
            resnet_forward(&m, n, 1);
            resnet_loss(&m, n);
            resnet_backward(&m, n);
            float loss;
            clrt_read(&rt, m.loss_mean.mem, 0, &loss, sizeof loss);
            const char *bad = !isfinite(loss) ? "loss" : !resnet_grads_finite(&m) ? "gradient"
                                                                                  : NULL;
            if (!bad) {
                resnet_sgd(&m, (float)o.lr, (float)o.momentum, (float)o.weight_decay);
                if (!resnet_params_finite(&m)) bad = "weights after the update";
            }
            if (bad) {  // earlier checkpoints and --save stay as they are
                fprintf(stderr, "%scltrain: error: non-finite %s (loss %g) at step %ld "
                                "(epoch %d, batch %d); nothing saved; try a lower --lr\n",
                        pg.tty ? "\n" : "", bad, loss, st.global_step + 1, epoch + 1, b + 1);
                rc = CLI_EXIT_DATA;
                break;
            }
            st.global_step++;
            st.running_loss += loss;
            st.running_count++;
            double t = session_now(), ips = n / (t - pg.t_last);
            pg.t_last = t;
            if (logf) {
                fprintf(logf, "{\"epoch\":%d,\"step\":%ld,\"loss\":%.9g,\"lr\":%g,"
                              "\"images_per_s\":%.2f}\n", epoch + 1, st.global_step, loss, o.lr,
                        ips);
                fflush(logf);
            }
            progress_update(&pg, epoch + 1, b + 1, batches, loss, ips);
            if ((b + 1) % o.print_every == 0) {
                // the seed: running_loss / 100 over the last print_every batches
                printf("%s[Epoch %d, Batch %d] loss: %.3f\n", pg.tty ? "\r" : "", epoch + 1, b + 1,
                       st.running_loss / o.print_every);
                fflush(stdout);
                st.running_loss = 0;
                st.running_count = 0;
            }
            int at_end = b + 1 == batches;
            st.epoch = at_end ? epoch + 1 : epoch;
            st.batch = at_end ? 0 : b + 1;
            if (at_end) { st.running_loss = 0; st.running_count = 0; }
            int max_hit = o.max_steps && st.global_step >= o.max_steps;
            int save_now = o.checkpoint &&
                           (max_hit || stop_signal || at_end ||
                            (o.checkpoint_every && st.global_step % o.checkpoint_every == 0));
            if (save_now && train_state_write(&st, &m, &o, ld.n, o.checkpoint) != 0) {
                rc = CLI_EXIT_DATA;
                break;
            }
            if (max_hit || stop_signal) { stopped = 1; break; }
        }
        if (pg.tty) fprintf(stderr, "\n");
    }
    if (stop_signal && rc == 0) {
        fprintf(stderr, "cltrain: interrupted by signal %d after step %ld%s%s\n",
                (int)stop_signal, st.global_step, o.checkpoint ? "; training state saved to " : "",
                o.checkpoint ? o.checkpoint : "");
        rc = stop_signal == SIGINT ? 130 : 143;
    }
    if (rc == 0) {
        printf("Finished Training\n");
        fflush(stdout);
        if (o.save && save_model(&m, o.save) != 0) rc = CLI_EXIT_DATA;
    }
    if (rc == 0) {
        long total = 0;
        long correct = session_evaluate(&m, &ds.test, &o, &total, NULL, NULL, NULL, err,
                                        sizeof err);
        if (correct < 0) {
            fprintf(stderr, "cltrain: error: %s\n", err);
            rc = CLI_EXIT_DATA;
        } else {
            double acc = total ? 100.0 * correct / total : 0.0;
            printf("Accuracy of the network on the %ld test images: %.2f%%\n", total, acc);
            if (logf) fprintf(logf, "{\"epoch\":%d,\"test_accuracy\":%.4f}\n", st.epoch, acc);
        }
    }
    if (logf) fclose(logf);
    clrt_host_free(&rt, &xb);
    clrt_host_free(&rt, &yb);
    resnet_free(&m);
    clrt_free(&rt);
    loader_free(&ld);
    dataset_free(&ds);
    train_state_free(&st);
    return rc;
}
