/* errors.c -- the one table of error codes (GF_ERRNO_MAP) and its lookups. */
#include "internal.h"

/* The message for a code from the table; "unknown error" otherwise. Never NULL. */
const char *gf_strerror(int err) {
    switch (err) {
    case 0: return "success";
#define GF__XX(name, val, msg) case GF_##name: return msg;
        GF_ERRNO_MAP(GF__XX)
#undef GF__XX
    default: return "unknown error";
    }
}

/* The symbolic name of a code ("EINVAL"); "UNKNOWN" otherwise. Never NULL. */
const char *gf_err_name(int err) {
    switch (err) {
    case 0: return "OK";
#define GF__XX(name, val, msg) case GF_##name: return #name;
        GF_ERRNO_MAP(GF__XX)
#undef GF__XX
    default: return "UNKNOWN";
    }
}

/* A failed system call's errno as a table code; codes outside the table become GF_EIO. */
int gf__errno_code(int e) {
    switch (e) {
#define GF__XX(name, val, msg) case val: return GF_##name;
        GF_ERRNO_MAP(GF__XX)
#undef GF__XX
    case ENFILE: return GF_EMFILE;
    case ENOBUFS: return GF_ENOMEM;
    default: return GF_EIO;
    }
}

int gf_from_errno(int errnum) { return gf__errno_code(errnum); }
