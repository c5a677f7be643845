/* test_errors.c -- the error table: codes, messages, names, errno mapping. */
#include "gilfree.h"
#include "test.h"

struct row {
    int code;
    int errnum;
    const char *name;
    const char *msg;
};

static const struct row table[] = {
#define GF__XX(name, val, msg) {GF_##name, val, #name, msg},
    GF_ERRNO_MAP(GF__XX)
#undef GF__XX
};
#define NROWS ((int)(sizeof table / sizeof table[0]))

TEST(codes_are_negative_errnos_and_distinct) {
    ASSERT(NROWS >= 20);
    for (int i = 0; i < NROWS; i++) {
        ASSERT(table[i].code < 0);
        ASSERT_EQ(table[i].code, -table[i].errnum);
        for (int j = 0; j < i; j++) ASSERT(table[i].code != table[j].code);
    }
    /* The values are Linux's errno values. */
    ASSERT_EQ(GF_EINVAL, -EINVAL);
    ASSERT_EQ(GF_ENOMEM, -ENOMEM);
    ASSERT_EQ(GF_ENOSPC, -ENOSPC);
    ASSERT_EQ(GF_ETIMEDOUT, -ETIMEDOUT);
    ASSERT_EQ(GF_EAGAIN, -EAGAIN);
    ASSERT_EQ(GF_EINTR, -EINTR);
    ASSERT_EQ(GF_EPIPE, -EPIPE);
    ASSERT_EQ(GF_EOWNERDEAD, -EOWNERDEAD);
    ASSERT_EQ(GF_EMSGSIZE, -EMSGSIZE);
    ASSERT_EQ(GF_EBADMSG, -EBADMSG);
    ASSERT_EQ(GF_EPERM, -EPERM);
    ASSERT_EQ(GF_EOVERFLOW, -EOVERFLOW);
    ASSERT_EQ(GF_ESRCH, -ESRCH);
    ASSERT_EQ(GF_ECHILD, -ECHILD);
    ASSERT_EQ(GF_EBUSY, -EBUSY);
    ASSERT_EQ(GF_ECANCELED, -ECANCELED);
    ASSERT_EQ(GF_ENOSYS, -ENOSYS);
    ASSERT_EQ(GF_EMFILE, -EMFILE);
    ASSERT_EQ(GF_EBADF, -EBADF);
    ASSERT_EQ(GF_EIO, -EIO);
}

TEST(strerror_and_names) {
    for (int i = 0; i < NROWS; i++) {
        ASSERT_EQ(strcmp(gf_strerror(table[i].code), table[i].msg), 0);
        ASSERT_EQ(strcmp(gf_err_name(table[i].code), table[i].name), 0);
    }
    ASSERT_EQ(strcmp(gf_strerror(GF_ETIMEDOUT), "timed out"), 0);
    ASSERT_EQ(strcmp(gf_err_name(GF_EOWNERDEAD), "EOWNERDEAD"), 0);
    ASSERT_EQ(strcmp(gf_strerror(0), "success"), 0);
    ASSERT_EQ(strcmp(gf_err_name(0), "OK"), 0);
    /* Unknown codes: never NULL. */
    int unknown[] = {-EXDEV, -100000, 1, EINVAL, INT32_MIN, INT32_MAX, -EDOM};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ASSERT(gf_strerror(unknown[i]) != NULL);
        ASSERT_EQ(strcmp(gf_strerror(unknown[i]), "unknown error"), 0);
        ASSERT_EQ(strcmp(gf_err_name(unknown[i]), "UNKNOWN"), 0);
    }
}

TEST(from_errno) {
    for (int i = 0; i < NROWS; i++) ASSERT_EQ(gf_from_errno(table[i].errnum), table[i].code);
    ASSERT_EQ(gf_from_errno(ENFILE), GF_EMFILE);
    ASSERT_EQ(gf_from_errno(ENOBUFS), GF_ENOMEM);
    /* Anything else is an I/O error, including 0 and nonsense. */
    ASSERT_EQ(gf_from_errno(EXDEV), GF_EIO);
    ASSERT_EQ(gf_from_errno(EDOM), GF_EIO);
    ASSERT_EQ(gf_from_errno(0), GF_EIO);
    ASSERT_EQ(gf_from_errno(-1), GF_EIO);
    ASSERT_EQ(gf_from_errno(100000), GF_EIO);
    /* Round trip: every mapped result has a name. */
    for (int e = 0; e < 200; e++) {
        int c = gf_from_errno(e);
        ASSERT(c < 0);
        ASSERT(strcmp(gf_err_name(c), "UNKNOWN") != 0);
    }
}

TEST_MAIN()
