/* The C interface of the DIEN scoring engine. Generated from crates/dien-capi/src/lib.rs by cbindgen: do not edit. */

#ifndef DIEN_H
#define DIEN_H

#include <stddef.h>
#include <stdint.h>

// Success.
#define DIEN_OK 0

// A required pointer was null.
#define DIEN_ERR_NULL 1

// A bad argument: empty candidate list, index out of range, a length too
// large, or a string that is not UTF-8.
#define DIEN_ERR_ARGUMENT 2

// The checkpoint or its vocabularies could not be read or are invalid.
#define DIEN_ERR_LOAD 3

// String ids were given to a predictor without vocabularies.
#define DIEN_ERR_NO_VOCAB 4

// An internal error (a bug) was caught; the call had no effect on the
// predictor, which stays usable.
#define DIEN_ERR_INTERNAL 5

// A loaded model (opaque). Immutable: share it between threads freely.
typedef struct DienPredictor DienPredictor;

// A scoring workspace (opaque). Use it from one thread at a time.
typedef struct DienScratch DienScratch;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

// Opens the checkpoint at `path` (a UTF-8 path) and, when the file
// `<name>.vocab.json` exists beside it, its vocabularies. On success
// `*out` receives a predictor to free with `dien_predictor_free()`; on
// failure `*out` is set to null.
//
// # Safety
// `path` must be null or a NUL-terminated string; `out` must be null or
// point at writable storage for one pointer.
int32_t dien_predictor_open(const char *path, struct DienPredictor **out);

// Frees a predictor (null is allowed and does nothing). No other thread
// may be using it.
//
// # Safety
// `p` must be null or come from `dien_predictor_open()`, freed only once.
void dien_predictor_free(struct DienPredictor *p);

// 1 if the predictor has vocabularies (string ids can be scored), 0 if
// not or if `p` is null.
//
// # Safety
// `p` must be null or a live predictor.
int32_t dien_predictor_has_vocabs(const struct DienPredictor *p);

// The longest history the model uses (`max_len`): longer histories keep
// their last `max_len` behaviours. 0 if `p` is null.
//
// # Safety
// `p` must be null or a live predictor.
size_t dien_predictor_max_len(const struct DienPredictor *p);

// A new scoring workspace, to free with `dien_scratch_free()`. Use one per
// thread; it grows to the largest request and then stops allocating.
struct DienScratch *dien_scratch_new(void);

// Frees a workspace (null is allowed and does nothing).
//
// # Safety
// `s` must be null or come from `dien_scratch_new()`, freed only once.
void dien_scratch_free(struct DienScratch *s);

// Scores `n_cand` candidates for user `uid` by index: writes one click
// probability per candidate into `out[0..n_cand]`. The history is
// `hist_len` (item, category) index pairs, oldest first (longer than
// `max_len`: the last `max_len` are used); candidate `i` is
// `(cand_mid[i], cand_cat[i])`. `scratch` may be null (a per-thread one
// is used). On failure `out` is left unspecified.
//
// # Safety
// Every non-null array must hold its stated number of values; `out` must
// be writable for `n_cand` floats; `p` and a non-null `scratch` must be
// live, and `scratch` not in use by another thread.
int32_t dien_score(const struct DienPredictor *p,
                   struct DienScratch *scratch,
                   uint32_t uid,
                   const uint32_t *hist_mid,
                   const uint32_t *hist_cat,
                   size_t hist_len,
                   const uint32_t *cand_mid,
                   const uint32_t *cand_cat,
                   size_t n_cand,
                   float *out);

// `dien_score()` by string ids of the checkpoint's vocabularies (UTF-8,
// NUL-terminated): the user, the history's items and their categories,
// the candidates' items and their categories. Unknown ids map to index 0.
// Needs vocabularies (`DIEN_ERR_NO_VOCAB` otherwise).
//
// # Safety
// As `dien_score()`; each array holds its stated number of string
// pointers, each a NUL-terminated string.
int32_t dien_score_ids(const struct DienPredictor *p,
                       struct DienScratch *scratch,
                       const char *user,
                       const char *const *hist_items,
                       const char *const *hist_cats,
                       size_t hist_len,
                       const char *const *cand_items,
                       const char *const *cand_cats,
                       size_t n_cand,
                       float *out);

// The message of the last failed call on this thread ("" if none). The
// pointer stays valid until the next failing call on this thread; copy
// the text to keep it.
const char *dien_last_error(void);

// The library version, e.g. "0.1.0" (a static string).
const char *dien_version(void);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* DIEN_H */
