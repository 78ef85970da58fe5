// `cltrain eval`: accuracy (overall and per class) of weights on a test split.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cmd_session.h"
#include "host/cli/startup.h"
#include "host/train/trainer.h"
#include "common/fs.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char eval_usage[] =
    "usage: cltrain eval --data DIR --weights FILE [options]\n"
    "  Evaluates ResNet weights (batch norm in eval mode) on the data set's test split.\n"
    "  --data DIR  --dataset auto|cifar10|idx|folder  --weights FILE.pth|FILE.safetensors\n"
    "  --arch resnet18|resnet34|resnet50|resnet101|resnet152 (default: what --weights holds)\n"
    "  --non-strict (load weights whose keys do not all fit; default strict)\n"
    "  --val-split F  --skip-bad  --workers N  --resize N (then CenterCrop)\n"
    "  --num-classes N (default: from the weights' fc)\n"
    "  --image-size S (224)  --normalize none|imagenet  --batch-size N (64)  --test-limit N\n"
    "  --predictions FILE.csv   write index,label,pred,logit_0,...,logit_{C-1} per image\n"
    "                           (index,path,label,... for image folders)\n"
    "  --device SPEC\n";

int cmd_eval(int argc, char **argv) {
    run_options o;
    run_options_defaults(&o);
    int rc = cmd_parse_options(argc, argv, &o, CMD_EVAL, eval_usage, NULL);
    if (rc) return rc < 0 ? 0 : rc;
    if (!o.data || !o.weights) return cli_usage_error(eval_usage, "eval needs --data and --weights");
    char err[2048];
    ckpt w;  // the weights, read once
    if (session_read_weights(&w, &o, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        return CLI_EXIT_DATA;
    }
    int K = o.num_classes ? o.num_classes : session_weights_classes(&w);
    dataset ds;
    if (session_open_data(&ds, &o, err, sizeof err) != 0) {
        fprintf(stderr, "cltrain: error: %s\n", err);
        ckpt_free(&w);
        return CLI_EXIT_DATA;
    }
    if (!K) K = ds.num_classes;
    FILE *csv = NULL;
    util_atomic_file pred = { 0 };
    if (o.predictions) {  // written atomically (common/fs.h): complete or not at all
        struct stat sb;
        int is_dir = stat(o.predictions, &sb) == 0 && S_ISDIR(sb.st_mode);
        if (is_dir || util_atomic_open(&pred, o.predictions, err, sizeof err) != 0) {
            fprintf(stderr, "cltrain: error: --predictions %s: %s\n", o.predictions,
                    is_dir ? "is a folder, not a file name" : err);
            dataset_free(&ds);
            ckpt_free(&w);
            return CLI_EXIT_DATA;
        }
        csv = pred.f;
        fprintf(csv, ds.test.files ? "index,path,label,pred" : "index,label,pred");
        for (int k = 0; k < K; k++) fprintf(csv, ",logit_%d", k);
        fprintf(csv, "\n");
    }
    clrt rt;
    ops_ctx ops;
    ops_shared shared = { 0 };
    clrt_options ro = { .device_spec = o.device };
    model m;
    memset(&m, 0, sizeof m);
    rc = cli_runtime_init(&rt, &ops, &shared, &ro, err, sizeof err);
    setup_spec spec = cli_setup_spec(&o, &w, &w, K, o.batch_size);
    spec.forward_only = 1;  // evaluation alone: nothing kept for a backward
    if (rc == 0) rc = setup_model(&m, &ops, &spec, err, sizeof err);
    ckpt_free(&w);
    if (rc == 0) {
        long total = 0;
        eval_stats st = { 0 };
        trainer tr;
        trainer_init(&tr, &m);
        loader_config lc;
        session_eval_loader(&o, &lc);
        session_skips sk;  // --skip-bad: the files that fail to decode, named once
        long correct = session_skips_init(&sk, &ds, err, sizeof err) ? -1 : 0;
        sk.print = cli_print_stderr;
        if (correct == 0 && eval_stats_init(&st, m.num_classes)) {
            correct = -1;
            snprintf(err, sizeof err, "out of memory");
        }
        session_skips_attach(&sk, 1, &lc);
        if (correct == 0)
            correct = trainer_evaluate(&tr, &ds.test, &lc, &total, &st, csv, err, sizeof err);
        trainer_free(&tr);
        if (correct < 0) {
            rc = CLI_EXIT_DATA;
        } else {
            printf("Accuracy of the network on the %ld test images: %.2f%%\n", total,
                   total ? 100.0 * correct / total : 0.0);
            int C = st.num_classes;
            for (int k = 0; k < C; k++) {  // a row of the confusion matrix: one true class
                long pt = 0, pc = st.confusion[(size_t)k * C + k];
                for (int j = 0; j < C; j++) pt += st.confusion[(size_t)k * C + j];
                if (!pt) continue;
                const char *name = k < ds.num_classes ? ds.class_names[k] : "?";
                printf("Accuracy of %-12s: %6.2f%% (%ld/%ld)\n", name, 100.0 * pc / pt, pc, pt);
            }
            session_report_skipped(&ds, &sk);
        }
        eval_stats_free(&st);
        session_skips_free(&sk);
    }
    if (rc != 0) fprintf(stderr, "cltrain: error: %s\n", err);
    if (csv) {
        if (rc == 0 && util_atomic_commit(&pred, err, sizeof err) != 0) {
            fprintf(stderr, "cltrain: error: --predictions %s: %s\n", o.predictions, err);
            rc = CLI_EXIT_DATA;
        }
        util_atomic_abort(&pred);   // nothing left to do after a commit
    }
    model_free(&m);
    clrt_free(&rt);
    ops_shared_free(&shared);
    dataset_free(&ds);
    return rc;
}
