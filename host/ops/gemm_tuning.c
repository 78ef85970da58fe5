// The GEMM tuning a configuration carries (gemm_tuning.h): CLBlast 1.5.3's kernel families and
// parameters, their constraints, and applying them to CLBlast.
#define _POSIX_C_SOURCE 200809L
#include "host/ops/gemm_tuning.h"
#include "common/check.h"

#include <clblast_c.h>
#include <stdio.h>
#include <string.h>

// ---- the kernel families: CLBlast 1.5.3's parameter names (its database order) ----

typedef struct kernel_info {
    const char *name;
    int n;
    const char *params[TUNE_MAX_PARAMS];
    size_t defaults[TUNE_MAX_PARAMS];   // CLBlast 1.5.3's "default" database entry (single)
} kernel_info;

static const kernel_info kernels[TK_COUNT] = {
    { "Xgemm", 16,
      { "GEMMK", "KREG", "KWG", "KWI", "MDIMA", "MDIMC", "MWG", "NDIMB", "NDIMC", "NWG", "SA",
        "SB", "STRM", "STRN", "VWM", "VWN" },
      { 0, 1, 32, 2, 8, 8, 32, 16, 16, 32, 1, 1, 0, 0, 4, 2 } },
    { "XgemmDirect", 10,
      { "KWID", "MDIMAD", "MDIMCD", "NDIMBD", "NDIMCD", "PADA", "PADB", "VWMD", "VWND", "WGD" },
      { 2, 8, 8, 8, 8, 1, 1, 1, 1, 16 } },
    { "Copy", 4, { "COPY_DIMX", "COPY_DIMY", "COPY_VW", "COPY_WPT" }, { 16, 16, 4, 2 } },
    { "Pad", 4, { "PAD_DIMX", "PAD_DIMY", "PAD_WPTX", "PAD_WPTY" }, { 32, 8, 2, 1 } },
    { "Transpose", 4, { "TRA_DIM", "TRA_PAD", "TRA_SHUFFLE", "TRA_WPT" }, { 8, 0, 1, 4 } },
    { "Padtranspose", 3, { "PADTRA_PAD", "PADTRA_TILE", "PADTRA_WPT" }, { 0, 8, 4 } },
};

static const char *const case_names[TUNE_CASES] = { "NN", "NT", "TN", "TT" };

const char *tune_kernel_name(int k) { return k >= 0 && k < TK_COUNT ? kernels[k].name : "?"; }
int tune_kernel_nparams(int k) { return k >= 0 && k < TK_COUNT ? kernels[k].n : 0; }
const char *tune_param_name(int k, int i) { return kernels[k].params[i]; }
const char *tune_case_name(int c) { return c >= 0 && c < TUNE_CASES ? case_names[c] : "?"; }

int tune_kernel_by_name(const char *name) {
    for (int k = 0; k < TK_COUNT; k++)
        if (!strcmp(kernels[k].name, name)) return k;
    return -1;
}

void tune_default_params(int k, size_t *v) {
    memcpy(v, kernels[k].defaults, sizeof kernels[k].defaults);
}

void tune_config_init(tune_config *c) { memset(c, 0, sizeof *c); }

// ---- constraints (those of CLBlast's own tuners, src/tuning/kernels/*.hpp) ----

static int pow2(size_t x) { return x && !(x & (x - 1)); }
static int mult(size_t x, size_t of) { return of && x % of == 0; }

static int check_xgemm(const size_t *v, char *err, size_t errlen, size_t *wg, size_t *local) {
    size_t GEMMK = v[0], KREG = v[1], KWG = v[2], KWI = v[3], MDIMA = v[4], MDIMC = v[5],
           MWG = v[6], NDIMB = v[7], NDIMC = v[8], NWG = v[9], SA = v[10], SB = v[11],
           STRM = v[12], STRN = v[13], VWM = v[14], VWN = v[15];
    UTIL_CHECK(GEMMK <= 1 && SA <= 1 && SB <= 1 && STRM <= 1 && STRN <= 1,
               "GEMMK, SA, SB, STRM, STRN must be 0 or 1");
    UTIL_CHECK(pow2(VWM) && pow2(VWN) && VWM <= 16 && VWN <= 16,
               "VWM, VWN must be 1, 2, 4, 8 or 16");
    UTIL_CHECK(mult(KWG, KWI), "KWG must be a multiple of KWI");
    UTIL_CHECK(mult(MWG, MDIMC * VWM) && mult(MWG, MDIMA * VWM), "MWG must be a multiple of "
               "MDIMC*VWM and MDIMA*VWM");
    UTIL_CHECK(mult(NWG, NDIMC * VWN) && mult(NWG, NDIMB * VWN), "NWG must be a multiple of "
               "NDIMC*VWN and NDIMB*VWN");
    if (GEMMK == 0) {
        UTIL_CHECK(KREG == 1, "KREG must be 1 with GEMMK 0");
        UTIL_CHECK(mult(MDIMC * NDIMC, MDIMA) && mult(MDIMC * NDIMC, NDIMB) &&
                   mult(KWG, MDIMC * NDIMC / MDIMA) && mult(KWG, MDIMC * NDIMC / NDIMB),
                   "KWG must be a multiple of MDIMC*NDIMC/MDIMA and MDIMC*NDIMC/NDIMB");
    } else {
        UTIL_CHECK(KWG == 1 && KWI == 1 && SA == 0 && SB == 0 && STRM == 0 && STRN == 0,
                   "GEMMK 1 needs KWG 1, KWI 1, SA 0, SB 0, STRM 0, STRN 0");
        UTIL_CHECK(MDIMA == MDIMC && NDIMB == NDIMC, "GEMMK 1 needs MDIMA = MDIMC, NDIMB = NDIMC");
        UTIL_CHECK(mult(KREG, VWN), "KREG must be a multiple of VWN");
    }
    *wg = MDIMC * NDIMC;
    *local = 4 * (SA * KWG * MWG + SB * KWG * NWG);
    return 0;
}

static int check_direct(const size_t *v, char *err, size_t errlen, size_t *wg, size_t *local) {
    size_t KWID = v[0], MDIMAD = v[1], MDIMCD = v[2], NDIMBD = v[3], NDIMCD = v[4],
           PADA = v[5], PADB = v[6], VWMD = v[7], VWND = v[8], WGD = v[9];
    UTIL_CHECK(PADA <= 1 && PADB <= 1, "PADA, PADB must be 0 or 1");
    UTIL_CHECK(pow2(VWMD) && pow2(VWND) && VWMD <= 16 && VWND <= 16,
               "VWMD, VWND must be 1, 2, 4, 8 or 16");
    UTIL_CHECK(mult(WGD, KWID), "WGD must be a multiple of KWID");
    UTIL_CHECK(mult(WGD, MDIMCD * VWMD) && mult(WGD, NDIMCD * VWND) && mult(WGD, MDIMAD * VWMD) &&
               mult(WGD, NDIMBD * VWND), "WGD must be a multiple of MDIMCD*VWMD, NDIMCD*VWND, "
               "MDIMAD*VWMD and NDIMBD*VWND");
    UTIL_CHECK(mult(MDIMCD * NDIMCD, MDIMAD) && mult(MDIMCD * NDIMCD, NDIMBD) &&
               mult(WGD, MDIMCD * NDIMCD / MDIMAD) && mult(WGD, MDIMCD * NDIMCD / NDIMBD),
               "WGD must be a multiple of MDIMCD*NDIMCD/MDIMAD and MDIMCD*NDIMCD/NDIMBD");
    *wg = MDIMCD * NDIMCD;
    *local = 4 * (WGD * (WGD + PADA) + WGD * (WGD + PADB));
    return 0;
}

int tune_kernel_check(int k, const size_t *v, const clrt_devinfo *d, char *err, size_t errlen) {
    UTIL_CHECK(k >= 0 && k < TK_COUNT, "unknown kernel family %d", k);
    static const char *const may_be_zero[] = { "GEMMK", "SA", "SB", "STRM", "STRN", "PADA",
                                                "PADB", "TRA_PAD", "TRA_SHUFFLE", "PADTRA_PAD" };
    for (int i = 0; i < kernels[k].n; i++) {
        int zero_ok = 0;
        for (size_t j = 0; j < sizeof may_be_zero / sizeof may_be_zero[0]; j++)
            zero_ok |= !strcmp(may_be_zero[j], kernels[k].params[i]);
        UTIL_CHECK(v[i] <= 4096 && (v[i] >= 1 || zero_ok), "%s %s=%zu is out of range",
                   kernels[k].name, kernels[k].params[i], v[i]);
    }
    size_t wg = 1, local = 0;
    int rc = 0;
    switch (k) {
    case TK_XGEMM: rc = check_xgemm(v, err, errlen, &wg, &local); break;
    case TK_XGEMM_DIRECT: rc = check_direct(v, err, errlen, &wg, &local); break;
    case TK_COPY:    // COPY_DIMX COPY_DIMY COPY_VW COPY_WPT
        UTIL_CHECK(pow2(v[2]) && v[2] <= 16 && v[3] >= 1, "COPY_VW must be 1..16 (a power of two), "
                   "COPY_WPT at least 1");
        wg = v[0] * v[1];
        break;
    case TK_PAD:     // PAD_DIMX PAD_DIMY PAD_WPTX PAD_WPTY
        UTIL_CHECK(v[2] >= 1 && v[3] >= 1, "PAD_WPTX, PAD_WPTY must be at least 1");
        wg = v[0] * v[1];
        break;
    case TK_TRANSPOSE:   // TRA_DIM TRA_PAD TRA_SHUFFLE TRA_WPT
        UTIL_CHECK(v[1] <= 1 && v[2] <= 1 && pow2(v[3]), "TRA_PAD, TRA_SHUFFLE must be 0 or 1, "
                   "TRA_WPT a power of two");
        wg = v[0] * v[0];
        local = 4 * v[3] * (v[3] * v[0]) * (v[0] + v[1]);
        break;
    case TK_PADTRANSPOSE:    // PADTRA_PAD PADTRA_TILE PADTRA_WPT
        UTIL_CHECK(v[0] <= 1 && v[2] >= 1, "PADTRA_PAD must be 0 or 1, PADTRA_WPT at least 1");
        wg = v[1] * v[1];
        local = 4 * (v[2] * v[1]) * (v[2] * v[1] + v[0]);
        break;
    }
    if (rc) return rc;
    UTIL_CHECK(wg >= 1, "%s: empty work-group", kernels[k].name);
    if (d) {
        UTIL_CHECK(wg <= d->max_work_group, "%s: work-group of %zu exceeds the device's %zu",
                   kernels[k].name, wg, d->max_work_group);
        UTIL_CHECK(local <= d->local_mem, "%s: needs %zu bytes of local memory, the device has %lu",
                   kernels[k].name, local, (unsigned long)d->local_mem);
    }
    return 0;
}

int tune_apply_kernels(const tune_config *c, cl_device_id dev, char *err, size_t errlen) {
    for (int k = 0; k < TK_COUNT; k++) {
        if (!c->has_kernel[k]) continue;
        CLBlastStatusCode s = CLBlastOverrideParameters(
            dev, kernels[k].name, CLBlastPrecisionSingle, (size_t)kernels[k].n,
            (const char **)kernels[k].params, c->kernel[k]);
        UTIL_CHECK(s == CLBlastSuccess, "CLBlastOverrideParameters(%s): %s", kernels[k].name,
                   clrt_clblast_error_name(s));
    }
    return 0;
}
