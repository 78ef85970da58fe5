// `cltrain predict`: the top-K classes (softmax) of image files with the training run's
// evaluation transform and class names (host/train/model_meta.h); flags override them.
#define _POSIX_C_SOURCE 200809L
#include "host/cli/cli.h"
#include "host/cli/startup.h"
#include "host/train/model_meta.h"
#include "host/cli/cmd_session.h"
#include "host/train/trainer.h"
#include "common/fs.h"
#include "dataset/image.h"
#include "dataset/transform.h"

#include <dirent.h>
#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

static const char predict_usage[] =
    "usage: cltrain predict --weights FILE [options] IMAGE|DIR...\n"
    "  Prints each image's path and its top-K classes with their probabilities (softmax),\n"
    "  best first. A DIR is walked recursively (image extensions only, sorted). The class\n"
    "  names and the transform come from `train --save` (FILE.safetensors metadata or the\n"
    "  FILE.pth.json beside FILE.pth); the flags override them. Without them: class indices,\n"
    "  --image-size 224, no --resize, --normalize none.\n"
    "  --weights FILE.pth|FILE.safetensors  --arch NAME (default: what FILE holds)\n"
    "  --top-k K (5, at most the number of classes)  --csv FILE (path,class_1,prob_1,...)\n"
    "  --classes FILE (one name a line)  --image-size S  --resize N (then CenterCrop)\n"
    "  --normalize none|imagenet  --batch-size N (16)  --skip-bad (report bad files, go on)\n"
    "  --device SPEC\n";

typedef struct predict_run {
    run_options o;
    const char *csv_path, *classes_file;
    int top_k, given_size, given_resize, given_norm;
    char **files;                  // (nfiles) paths to predict, malloc'd
    int nfiles, cap;
    char **names;                  // (K) class names, malloc'd
    int K;
    int bad;                       // files reported and skipped
    ckpt weights;                  // --weights, read once (settle_meta), freed once loaded
    char err[2048];
} predict_run;

// ---- the inputs ----

static int add_file(predict_run *p, const char *path) {
    if (p->nfiles == p->cap) {
        int cap = p->cap ? 2 * p->cap : 64;
        char **f = realloc(p->files, (size_t)cap * sizeof *f);
        if (!f) return -1;
        p->files = f;
        p->cap = cap;
    }
    return (p->files[p->nfiles] = strdup(path)) ? (p->nfiles++, 0) : -1;
}

// torchvision's IMG_EXTENSIONS on the lower-cased name, as the image-folder reader.
static int image_ext(const char *name) {
    static const char *const ext[] = { ".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif",
                                       ".tiff", ".webp" };
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        size_t e = strlen(ext[i]);
        if (n > e && !strcasecmp(name + n - e, ext[i])) return 1;
    }
    return 0;
}

static int walk(predict_run *p, const char *dir, int depth) {
    struct dirent **ents;
    int n = scandir(dir, &ents, NULL, alphasort);
    if (n < 0) { snprintf(p->err, sizeof p->err, "%s: cannot list the folder", dir); return -1; }
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *nm = ents[i]->d_name;
        char path[4096];
        struct stat sb;
        if (rc || nm[0] == '.') { free(ents[i]); continue; }
        snprintf(path, sizeof path, "%s/%s", dir, nm);
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
            if (depth > 32) snprintf(p->err, sizeof p->err, "%.1900s: folders nested too deep", path), rc = -1;
            else rc = walk(p, path, depth + 1);
        } else if (image_ext(nm) && add_file(p, path)) {
            snprintf(p->err, sizeof p->err, "out of memory");
            rc = -1;
        }
        free(ents[i]);
    }
    free(ents);
    return rc;
}

static int collect(predict_run *p, int argc, char **argv) {
    for (int i = 0; i < argc; i++) {
        struct stat sb;
        if (stat(argv[i], &sb) != 0) {
            snprintf(p->err, sizeof p->err, "%s: no such file or folder", argv[i]);
            return -1;
        }
        int rc = S_ISDIR(sb.st_mode) ? walk(p, argv[i], 0) : add_file(p, argv[i]);
        if (rc) {
            if (!p->err[0]) snprintf(p->err, sizeof p->err, "out of memory");
            return -1;
        }
    }
    if (!p->nfiles) { snprintf(p->err, sizeof p->err, "no image files found"); return -1; }
    return 0;
}

// ---- names and transform: flags, else the training run's record, else defaults ----

static int read_class_file(predict_run *p) {
    FILE *f = fopen(p->classes_file, "r");
    if (!f) { snprintf(p->err, sizeof p->err, "--classes %s: cannot read it", p->classes_file); return -1; }
    char line[1024];
    int k = 0;
    while (k < p->K && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0;
        free(p->names[k]);
        p->names[k++] = strdup(line);
    }
    fclose(f);
    if (k < p->K) {
        snprintf(p->err, sizeof p->err, "--classes %s: %d names for %d classes", p->classes_file,
                 k, p->K);
        return -1;
    }
    return 0;
}

static int settle_meta(predict_run *p) {
    ckpt *c = &p->weights;
    if (session_read_weights(c, &p->o, p->err, sizeof p->err)) return -1;
    model_arch cfg;
    int rc = model_arch_from_ckpt(&cfg, c, NULL, p->o.weights, p->err, sizeof p->err);
    model_meta meta;
    int have = rc ? 0 : model_meta_load(&meta, p->o.weights, c, p->err, sizeof p->err);
    if (rc || have < 0) return -1;
    p->K = cfg.num_classes;
    p->names = calloc((size_t)p->K, sizeof *p->names);
    for (int k = 0; p->names && k < p->K; k++) {
        char idx[16];
        snprintf(idx, sizeof idx, "%d", k);
        p->names[k] = strdup(have && meta.classes && meta.num_classes == p->K ? meta.classes[k] : idx);
    }
    if (have) {
        if (!p->given_size) p->o.image_size = meta.image_size;
        if (!p->given_resize) p->o.resize = meta.resize;
        if (!p->given_norm) p->o.normalize = meta.normalize;
        model_meta_free(&meta);
    }
    if (!p->names) { snprintf(p->err, sizeof p->err, "out of memory"); return -1; }
    if (p->classes_file && read_class_file(p)) return -1;
    if (p->top_k > p->K) p->top_k = p->K;
    return 0;
}

// Probes every file's header: a bad one ends the run (exit 1), or with --skip-bad is reported
// and dropped.
static int check_files(predict_run *p) {
    int keep = 0;
    for (int i = 0; i < p->nfiles; i++) {
        image_info info;
        char msg[1024];
        if (image_probe(p->files[i], &info, msg, sizeof msg) == 0) {
            p->files[keep++] = p->files[i];
            continue;
        }
        if (!p->o.skip_bad) {
            snprintf(p->err, sizeof p->err, "bad file %s (--skip-bad leaves it out)", msg);
            for (int j = i; j < p->nfiles; j++) p->files[keep++] = p->files[j];
            p->nfiles = keep;
            return -1;
        }
        fprintf(stderr, "cltrain: warning: skipping bad file %s\n", msg);
        free(p->files[i]);
        p->bad++;
    }
    p->nfiles = keep;
    if (!keep) { snprintf(p->err, sizeof p->err, "no readable image left"); return -1; }
    return 0;
}

// ---- the batches ----

// Image file into its place in x (3, n, S, S), as the loader's eval path: decode, Resize((S, S))
// or Resize(N) + CenterCrop(S), ToTensor, [Normalize]; gray replicated to RGB.
static int load_image(const predict_run *p, const char *path, image *img, uint8_t *out,
                      transform_scratch *sc, float *x, int n, int pos, char *msg, size_t len) {
    if (image_decode(path, img, msg, len)) return -1;
    int S = p->o.image_size;
    transform_op op = { .kind = p->o.resize ? TRANSFORM_CENTER : TRANSFORM_SQUARE, .size = S,
                        .resize = p->o.resize };
    if (transform_apply(out, img->pixels, img->c, img->h, img->w, &op, sc)) {
        snprintf(msg, len, "%s: out of memory transforming it", path);
        return -1;
    }
    static const float mean[3] = TRANSFORM_IMAGENET_MEAN, std[3] = TRANSFORM_IMAGENET_STD;
    size_t plane = (size_t)S * S;
    for (int ch = 0; ch < 3; ch++) {
        float *dst = x + ((size_t)ch * n + pos) * plane;
        transform_to_tensor(dst, out + (img->c == 1 ? 0 : ch) * plane, plane);
        if (p->o.normalize) transform_normalize(dst, plane, mean[ch], std[ch]);
    }
    return 0;
}

static void csv_path(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) fprintf(f, *s == '"' ? "\"\"" : "%c", *s);
    fputc('"', f);
}

// Softmax of image i's logits (K, n) in double, then the K best, first maximum first.
static void report(predict_run *p, const float *logits, int n, int i, const char *path, FILE *csv) {
    int K = p->K;
    double mx = -INFINITY, sum = 0, prob[K];
    int used[K];
    for (int k = 0; k < K; k++) mx = fmax(mx, logits[(size_t)k * n + i]);
    for (int k = 0; k < K; k++) sum += prob[k] = exp((double)logits[(size_t)k * n + i] - mx);
    for (int k = 0; k < K; k++) { prob[k] /= sum; used[k] = 0; }
    printf("%s:", path);
    if (csv) csv_path(csv, path);
    for (int t = 0; t < p->top_k; t++) {
        int best = -1;
        for (int k = 0; k < K; k++)
            if (!used[k] && (best < 0 || prob[k] > prob[best])) best = k;
        used[best] = 1;
        printf("%s %s %.4f", t ? "," : "", p->names[best], prob[best]);
        if (csv) { fputc(',', csv); csv_path(csv, p->names[best]); fprintf(csv, ",%.9g", prob[best]); }
    }
    printf("\n");
    if (csv) fputc('\n', csv);
}

static int predict_all(predict_run *p, trainer *tr, FILE *csv) {
    int B = p->o.batch_size, S = p->o.image_size, rc = 0;
    float *x = malloc(3 * (size_t)B * S * S * sizeof(float));
    float *logits = malloc((size_t)p->K * B * sizeof(float));
    uint8_t *out = malloc(3 * (size_t)S * S);
    const char **batch = malloc((size_t)B * sizeof *batch);
    image img = { 0 };
    transform_scratch sc = { 0 };
    if (!x || !logits || !out || !batch) { snprintf(p->err, sizeof p->err, "out of memory"); rc = -1; }
    for (int i = 0; rc == 0 && i < p->nfiles;) {
        // Decode into a packed batch first: the layout (3, n, S, S) needs n, so count the good
        // ones of the next B files, then place them.
        int n = 0;
        for (; i < p->nfiles && n < B; i++) batch[n++] = p->files[i];
        int placed = 0;
        for (int j = 0; j < n && rc == 0; j++) {
            char msg[1024];
            if (load_image(p, batch[j], &img, out, &sc, x, n, placed, msg, sizeof msg) == 0) {
                batch[placed++] = batch[j];
            } else if (p->o.skip_bad) {
                fprintf(stderr, "cltrain: warning: skipping bad file %s\n", msg);
                p->bad++;
            } else {
                snprintf(p->err, sizeof p->err, "bad file %s (--skip-bad leaves it out)", msg);
                rc = -1;
            }
        }
        if (rc || !placed) continue;
        if (placed < n)  // repack (3, n, ..) as (3, placed, ..): channel planes move down
            for (int ch = 1; ch < 3; ch++)
                memmove(x + (size_t)ch * placed * S * S, x + (size_t)ch * n * S * S,
                        (size_t)placed * S * S * sizeof(float));
        trainer_predict(tr, x, placed, logits);
        for (int j = 0; j < placed; j++) report(p, logits, placed, j, batch[j], csv);
    }
    free(x); free(logits); free(out); free(batch);
    image_free(&img);
    transform_scratch_free(&sc);
    return rc;
}

// ---- the command ----

enum { P_WEIGHTS = 300, P_TOPK, P_CSV, P_BATCH, P_DEVICE, P_CLASSES, P_IMAGE, P_RESIZE,
       P_NORMALIZE, P_SKIP_BAD, P_ARCH, P_HELP };

// 0 to run, -1 after --help, or CLI_EXIT_USAGE.
static int parse(predict_run *p, int argc, char **argv) {
    static const struct option opts[] = {
        { "weights", required_argument, 0, P_WEIGHTS }, { "top-k", required_argument, 0, P_TOPK },
        { "csv", required_argument, 0, P_CSV }, { "batch-size", required_argument, 0, P_BATCH },
        { "device", required_argument, 0, P_DEVICE }, { "classes", required_argument, 0, P_CLASSES },
        { "image-size", required_argument, 0, P_IMAGE }, { "resize", required_argument, 0, P_RESIZE },
        { "normalize", required_argument, 0, P_NORMALIZE }, { "skip-bad", no_argument, 0, P_SKIP_BAD },
        { "arch", required_argument, 0, P_ARCH }, { "help", no_argument, 0, P_HELP }, { 0, 0, 0, 0 },
    };
    static const char *norm[] = { "none", "imagenet", NULL };
    run_options *o = &p->o;
    int c, bad = 0;
    optind = 0;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
        switch (c) {
        case P_HELP: fputs(predict_usage, stdout); return -1;
        case P_WEIGHTS: o->weights = optarg; break;
        case P_TOPK: bad |= cli_parse_int("--top-k", optarg, 1, 100000, &p->top_k) != 0; break;
        case P_CSV: p->csv_path = optarg; break;
        case P_BATCH: bad |= cli_parse_int("--batch-size", optarg, 1, 4096, &o->batch_size) != 0; break;
        case P_DEVICE: o->device = optarg; break;
        case P_CLASSES: p->classes_file = optarg; break;
        case P_IMAGE:
            bad |= cli_parse_int("--image-size", optarg, 1, 4096, &o->image_size) != 0;
            p->given_size = 1;
            break;
        case P_RESIZE:
            bad |= cli_parse_int("--resize", optarg, 1, 4096, &o->resize) != 0;
            p->given_resize = 1;
            break;
        case P_NORMALIZE:
            bad |= (o->normalize = cli_parse_choice("--normalize", optarg, norm)) < 0;
            p->given_norm = 1;
            break;
        case P_SKIP_BAD: o->skip_bad = 1; break;
        case P_ARCH: o->arch = optarg; break;
        case ':': return cli_usage_error(predict_usage, "%s needs a value", argv[optind - 1]);
        default: return cli_usage_error(predict_usage, "unknown option '%s'", argv[optind - 1]);
        }
        if (bad) return cli_show_usage(predict_usage);
    }
    if (!o->weights) return cli_usage_error(predict_usage, "predict needs --weights FILE");
    if (optind >= argc) return cli_usage_error(predict_usage, "predict needs IMAGE or DIR arguments");
    return 0;
}

static int run_model(predict_run *p) {
    clrt rt;
    ops_ctx ops;
    ops_shared shared = { 0 };
    clrt_options ro = { .device_spec = p->o.device };
    model m;
    memset(&m, 0, sizeof m);
    util_atomic_file af = { 0 };
    char *err = p->err;
    size_t errlen = sizeof p->err;
    int B = p->o.batch_size < p->nfiles ? p->o.batch_size : p->nfiles;
    p->o.batch_size = B;
    int rc = cli_runtime_init(&rt, &ops, &shared, &ro, err, errlen);
    setup_spec spec = cli_setup_spec(&p->o, &p->weights, &p->weights, p->K, B);
    spec.forward_only = 1;  // evaluation alone: nothing kept for a backward
    if (rc == 0) rc = setup_model(&m, &ops, &spec, err, errlen);
    ckpt_free(&p->weights);  // loaded: its host copy is not needed any more
    if (rc == 0 && p->csv_path) {
        rc = util_atomic_open(&af, p->csv_path, err, errlen);
        if (rc == 0) {
            fprintf(af.f, "path");
            for (int t = 1; t <= p->top_k; t++) fprintf(af.f, ",class_%d,prob_%d", t, t);
            fprintf(af.f, "\n");
        }
    }
    if (rc == 0) {
        trainer tr;
        trainer_init(&tr, &m);
        rc = predict_all(p, &tr, af.f);
        trainer_free(&tr);
    }
    if (rc == 0 && af.f) rc = util_atomic_commit(&af, err, errlen);
    util_atomic_abort(&af);
    model_free(&m);
    clrt_free(&rt);
    ops_shared_free(&shared);
    return rc ? (rc == CLI_EXIT_USAGE ? rc : CLI_EXIT_DATA) : 0;
}

int cmd_predict(int argc, char **argv) {
    predict_run p;
    memset(&p, 0, sizeof p);
    run_options_defaults(&p.o);
    p.o.batch_size = 16;
    p.top_k = 5;
    int rc = parse(&p, argc, argv);
    if (rc) return rc < 0 ? 0 : rc;
    if (collect(&p, argc - optind, argv + optind) || settle_meta(&p) || check_files(&p))
        rc = CLI_EXIT_DATA;
    else
        rc = run_model(&p);
    if (rc) fprintf(stderr, "cltrain: error: %s\n", p.err);
    else if (p.bad) fprintf(stderr, "cltrain: %d bad files skipped\n", p.bad);
    fflush(stdout);
    for (int i = 0; i < p.nfiles; i++) free(p.files[i]);
    free(p.files);
    for (int k = 0; p.names && k < p.K; k++) free(p.names[k]);
    free(p.names);
    ckpt_free(&p.weights);
    return rc;
}
