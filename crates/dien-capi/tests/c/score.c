/*
 * Scores one request through the C interface and checks the interface's
 * contract: equal scores by index, by string id and from several threads,
 * and error codes for bad input.
 *
 * Usage: score CHECKPOINT UID HIST_LEN (MID CAT)... N_CAND (MID CAT)...
 *
 * String ids are "user<i>", "item<i>" and "cat<i>", as in the vocabulary
 * sidecar the test writes beside the checkpoint. Prints the probabilities
 * by index on one line ("scores p0 p1 ..."), then "ok"; exits non-zero on
 * the first failed check.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dien.h"

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "check failed at line %d: %s (last error: %s)\n", \
                    __LINE__, #cond, dien_last_error());                       \
            exit(1);                                                           \
        }                                                                      \
    } while (0)

typedef struct {
    const DienPredictor *pred;
    uint32_t uid;
    const uint32_t *hm, *hc, *cm, *cc;
    size_t hist_len, n_cand;
    const float *want;
    int failures;
} Job;

/* Scores the request many times with the thread's own scratch (NULL). */
static void *worker(void *arg) {
    Job *j = (Job *)arg;
    float *out = malloc(j->n_cand * sizeof(float));
    for (int round = 0; round < 20; round++) {
        if (dien_score(j->pred, NULL, j->uid, j->hm, j->hc, j->hist_len, j->cm,
                       j->cc, j->n_cand, out) != DIEN_OK ||
            memcmp(out, j->want, j->n_cand * sizeof(float)) != 0) {
            j->failures++;
        }
    }
    free(out);
    return NULL;
}

static char **ids(const char *prefix, const uint32_t *v, size_t n) {
    char **out = malloc((n ? n : 1) * sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        out[i] = malloc(32);
        snprintf(out[i], 32, "%s%u", prefix, v[i]);
    }
    return out;
}

static void free_ids(char **v, size_t n) {
    for (size_t i = 0; i < n; i++) free(v[i]);
    free(v);
}

int main(int argc, char **argv) {
    CHECK(argc >= 4);
    int a = 2;
    uint32_t uid = (uint32_t)strtoul(argv[a++], NULL, 10);
    size_t hist_len = strtoul(argv[a++], NULL, 10);
    uint32_t *hm = malloc((hist_len + 1) * sizeof(uint32_t));
    uint32_t *hc = malloc((hist_len + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < hist_len; i++) {
        CHECK(a + 1 < argc);
        hm[i] = (uint32_t)strtoul(argv[a++], NULL, 10);
        hc[i] = (uint32_t)strtoul(argv[a++], NULL, 10);
    }
    CHECK(a < argc);
    size_t n = strtoul(argv[a++], NULL, 10);
    uint32_t *cm = malloc((n + 1) * sizeof(uint32_t));
    uint32_t *cc = malloc((n + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        CHECK(a + 1 < argc);
        cm[i] = (uint32_t)strtoul(argv[a++], NULL, 10);
        cc[i] = (uint32_t)strtoul(argv[a++], NULL, 10);
    }

    /* Opening a missing file fails with a message and a null handle. */
    DienPredictor *pred = (DienPredictor *)1;
    CHECK(dien_predictor_open("/nonexistent/m.safetensors", &pred) == DIEN_ERR_LOAD);
    CHECK(pred == NULL);
    CHECK(strstr(dien_last_error(), "nonexistent") != NULL);
    CHECK(dien_predictor_open(NULL, &pred) == DIEN_ERR_NULL);
    CHECK(dien_predictor_open(argv[1], NULL) == DIEN_ERR_NULL);

    CHECK(dien_predictor_open(argv[1], &pred) == DIEN_OK);
    CHECK(pred != NULL);
    CHECK(dien_predictor_has_vocabs(pred) == 1);
    CHECK(dien_predictor_max_len(pred) > 0);

    /* By index, with an explicit scratch and with the thread's own. */
    DienScratch *scratch = dien_scratch_new();
    CHECK(scratch != NULL);
    float *p = malloc(n * sizeof(float));
    float *q = malloc(n * sizeof(float));
    CHECK(dien_score(pred, scratch, uid, hm, hc, hist_len, cm, cc, n, p) == DIEN_OK);
    CHECK(dien_score(pred, NULL, uid, hm, hc, hist_len, cm, cc, n, q) == DIEN_OK);
    CHECK(memcmp(p, q, n * sizeof(float)) == 0);
    for (size_t i = 0; i < n; i++) CHECK(p[i] > 0.0f && p[i] < 1.0f);

    /* By string id: the same scores. */
    char user[32];
    snprintf(user, sizeof user, "user%u", uid);
    char **shm = ids("item", hm, hist_len), **shc = ids("cat", hc, hist_len);
    char **scm = ids("item", cm, n), **scc = ids("cat", cc, n);
    memset(q, 0, n * sizeof(float));
    CHECK(dien_score_ids(pred, scratch, user, (const char *const *)shm,
                         (const char *const *)shc, hist_len,
                         (const char *const *)scm, (const char *const *)scc, n,
                         q) == DIEN_OK);
    CHECK(memcmp(p, q, n * sizeof(float)) == 0);

    /* Several threads share the predictor. */
    pthread_t th[3];
    Job jobs[3];
    for (int t = 0; t < 3; t++) {
        Job j = {pred, uid, hm, hc, cm, cc, hist_len, n, p, 0};
        jobs[t] = j;
        CHECK(pthread_create(&th[t], NULL, worker, &jobs[t]) == 0);
    }
    for (int t = 0; t < 3; t++) {
        CHECK(pthread_join(th[t], NULL) == 0);
        CHECK(jobs[t].failures == 0);
    }

    /* Bad input: error codes and messages, never a crash. */
    CHECK(dien_score(pred, scratch, uid, hm, hc, hist_len, cm, cc, 0, q) == DIEN_ERR_ARGUMENT);
    CHECK(strstr(dien_last_error(), "empty candidate list") != NULL);
    CHECK(dien_score(NULL, scratch, uid, hm, hc, hist_len, cm, cc, n, q) == DIEN_ERR_NULL);
    CHECK(dien_score(pred, scratch, uid, hm, hc, hist_len, cm, cc, n, NULL) == DIEN_ERR_NULL);
    CHECK(strstr(dien_last_error(), "out") != NULL);
    if (hist_len > 0) {
        CHECK(dien_score(pred, scratch, uid, NULL, hc, hist_len, cm, cc, n, q) == DIEN_ERR_NULL);
        CHECK(strstr(dien_last_error(), "hist_mid") != NULL);
    }
    uint32_t bad = 4000000000u;
    CHECK(dien_score(pred, scratch, uid, hm, hc, hist_len, &bad, cc, 1, q) == DIEN_ERR_ARGUMENT);
    CHECK(strstr(dien_last_error(), "out of range") != NULL);
    CHECK(dien_score(pred, scratch, bad, hm, hc, hist_len, cm, cc, n, q) == DIEN_ERR_ARGUMENT);
    CHECK(dien_score(pred, scratch, uid, hm, hc, hist_len, cm, cc, (size_t)-1, q) == DIEN_ERR_ARGUMENT);
    const char *null_id[1] = {NULL};
    CHECK(dien_score_ids(pred, scratch, user, NULL, NULL, 0, null_id,
                         (const char *const *)scc, 1, q) == DIEN_ERR_NULL);
    CHECK(strstr(dien_last_error(), "cand_items[0]") != NULL);
    CHECK(dien_score_ids(pred, scratch, NULL, NULL, NULL, 0,
                         (const char *const *)scm, (const char *const *)scc, 1,
                         q) == DIEN_ERR_NULL);
    /* Unknown ids are index 0, not errors; an empty history is valid. */
    const char *unknown[1] = {"no-such-item"};
    CHECK(dien_score_ids(pred, scratch, "nobody", NULL, NULL, 0, unknown, unknown, 1, q) == DIEN_OK);

    /* After the errors, the same request scores the same. */
    CHECK(dien_score(pred, scratch, uid, hm, hc, hist_len, cm, cc, n, q) == DIEN_OK);
    CHECK(memcmp(p, q, n * sizeof(float)) == 0);

    printf("scores");
    for (size_t i = 0; i < n; i++) printf(" %.9g", p[i]);
    printf("\n");

    free_ids(shm, hist_len);
    free_ids(shc, hist_len);
    free_ids(scm, n);
    free_ids(scc, n);
    free(p);
    free(q);
    free(hm);
    free(hc);
    free(cm);
    free(cc);
    dien_scratch_free(scratch);
    dien_predictor_free(pred);
    dien_predictor_free(NULL);
    dien_scratch_free(NULL);
    printf("ok\n");
    return 0;
}
