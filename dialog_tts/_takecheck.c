/* The quality gate's figures of one take in one compiled pass: dialog_tts._takecheck.measure.
 *
 * dialog_tts.quality.measure_numpy computes the same figures with about forty NumPy
 * calls.  Each call has a fixed cost, higher right after a synthesis has pushed
 * NumPy out of the CPU's caches, and espeak says a line so quickly that forty
 * such calls exceed the gate's budget of 2 % of synthesis time.  One pass over
 * the samples stays within it (benchmark_enhanced.py --only quality measures
 * both, against each offline backend's synthesis).  No library computes these
 * figures (frame energies, the clipped share, the speech span, its longest
 * pause, the longest steady stretch) in one call, so they are written here;
 * quality/checks.py keeps the NumPy version for where this module was not built, and
 * the tests hold both to the same frame-by-frame reference.
 *
 * Everything here mirrors quality/checks.py: see its docstrings for what each figure
 * means and why.  Samples are compared in float32, as NumPy compares a float32
 * array with a Python float.
 *
 * The module also holds the loudness meter's K-weighting loop, biquads: a cascade
 * of second-order sections (the arithmetic of scipy.signal.sosfilt, transposed
 * direct form II, in the samples' own precision).  dialog_tts.finish.kweighting wraps it
 * and falls back to scipy.signal.sosfilt where this module was not built.  Last, two passes of
 * the true-peak reader: its bounds, peak_bounds, and libebur128's interpolator's peaks,
 * frame_points (below).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FRAME 0.010                  /* seconds per energy frame */
#define FLOOR_DB (-100.0)
#define SILENCE_BELOW_PEAK_DB 40.0
#define SILENCE_DB (-60.0)
#define STEADY_WINDOW 30             /* frames */
#define STEADY_SPREAD_DB 1.5

/* Four float lanes (GCC and Clang vector extensions: SSE on x86-64, NEON on arm64). */
typedef float v4 __attribute__((vector_size(16)));
typedef int v4i __attribute__((vector_size(16)));

/* The larger of two magnitudes, lane by lane: one instruction on x86 (maxps, markedly quicker in the
 * frame pass than the select below); a select elsewhere. */
#if defined(__SSE__) && !defined(DIALOG_TTS_GENERIC)
#include <xmmintrin.h>
#define VMAX(a, b) ((v4)_mm_max_ps((__m128)(a), (__m128)(b)))
#else
static inline v4 vmax(v4 a, v4 b) { v4i m = a > b; return (v4)((m & (v4i)a) | (~m & (v4i)b)); }
#define VMAX vmax
#endif

typedef struct {
    double peak_db, clipped, span, pause, steady;
} Figures;

/* Sum of squares of one frame (float32, eight lanes), and its largest magnitude. */
static float frame_pass(const float *p, Py_ssize_t size, float *peak) {
    const v4i magnitude = {0x7fffffff, 0x7fffffff, 0x7fffffff, 0x7fffffff};
    v4 a0 = {0}, a1 = {0}, m0 = {0}, m1 = {0}, u, w;
    Py_ssize_t i = 0;
    for (; i + 8 <= size; i += 8) {
        memcpy(&u, p + i, sizeof u);
        memcpy(&w, p + i + 4, sizeof w);
        a0 += u * u;
        a1 += w * w;
        m0 = VMAX((v4)((v4i)u & magnitude), m0);
        m1 = VMAX((v4)((v4i)w & magnitude), m1);
    }
    a0 += a1;
    m0 = VMAX(m0, m1);
    float sum = (a0[0] + a0[1]) + (a0[2] + a0[3]), m = m0[0];
    for (int k = 1; k < 4; k++) m = m0[k] > m ? m0[k] : m;
    for (; i < size; i++) { sum += p[i] * p[i]; m = fabsf(p[i]) > m ? fabsf(p[i]) : m; }
    *peak = m;
    return sum;
}

/* Every frame's energy (sums) and largest magnitude (peaks); the take's largest in *peak. */
static void frames(const float *x, Py_ssize_t n, Py_ssize_t size, double *sums, float *peaks, float *peak) {
    Py_ssize_t count = n / size;
    float top = 0.0f;
    for (Py_ssize_t f = 0; f < count; f++) {
        sums[f] = frame_pass(x + f * size, size, peaks + f);
        top = peaks[f] > top ? peaks[f] : top;
    }
    for (Py_ssize_t i = count * size; i < n; i++)
        top = fabsf(x[i]) > top ? fabsf(x[i]) : top;
    *peak = top;
}

/* Share of samples on flat tops: equal to the one before and within 2 % of the peak (at least 0.5).
 * Only frames whose peak reaches the bound (and the tail after the last frame) are read again. */
static double clipped_share(const float *x, Py_ssize_t n, Py_ssize_t size, const float *peaks, float peak) {
    double near = 0.98 * (double)peak;
    if (n < 3 || near < 0.49)
        return 0.0;
    const float bound = (float)near;
    Py_ssize_t count = n / size, flat = 0;
    for (Py_ssize_t f = 0; f <= count; f++) {
        if (f < count && peaks[f] < bound)
            continue;
        Py_ssize_t i = f * size > 1 ? f * size : 1, end = f < count ? (f + 1) * size : n;
        for (; i < end; i++)
            flat += (x[i] == x[i - 1]) & (fabsf(x[i]) >= bound);
    }
    return (double)flat / (double)n;
}

/* The longest run of windows of STEADY_WINDOW frames whose levels (bels) spread less than
 * STEADY_SPREAD_DB; silent frames count as +1000 and -1000 bels in turn, so a window with
 * one is never steady.  Running sums as in quality.steady_seconds.  lev: count + 1 doubles. */
static double steady_seconds(const double *sums, const unsigned char *sounding, Py_ssize_t count,
                             double *lev, double *sq) {
    const Py_ssize_t w = STEADY_WINDOW;
    const double bound = (STEADY_SPREAD_DB / 10.0 * w) * (STEADY_SPREAD_DB / 10.0 * w);
    if (count < w)
        return 0.0;
    double s1 = 0.0, s2 = 0.0;
    lev[0] = sq[0] = 0.0;
    for (Py_ssize_t f = 0; f < count; f++) {
        double v = sounding[f] ? (double)log10f((float)sums[f]) : ((f & 1) ? -1e3 : 1e3);
        s1 += v; s2 += v * v;
        lev[f + 1] = s1; sq[f + 1] = s2;
    }
    Py_ssize_t run = 0, best = 0;
    for (Py_ssize_t k = 0; k + w <= count; k++) {
        double a = lev[k + w] - lev[k], b = sq[k + w] - sq[k];
        if (b * w - a * a < bound) { if (++run > best) best = run; } else run = 0;
    }
    return best ? (double)(best + w - 1) * FRAME : 0.0;
}

/* Span, longest inner pause and steady stretch of the frames louder than the silence floor. */
static void speech_figures(const double *sums, Py_ssize_t count, Py_ssize_t size, double *scratch, Figures *out) {
    double floor_db = out->peak_db - SILENCE_BELOW_PEAK_DB > SILENCE_DB ? out->peak_db - SILENCE_BELOW_PEAK_DB
                                                                          : SILENCE_DB;
    const float limit = (float)((double)size * pow(10.0, floor_db / 10.0));
    unsigned char *sounding = (unsigned char *)(scratch + 2 * (count + 1));
    Py_ssize_t first = -1, last = -1, gap = 0, on = 0;
    for (Py_ssize_t f = 0; f < count; f++) {
        sounding[f] = (float)sums[f] > limit;
        if (!sounding[f])
            continue;
        if (last >= 0 && f - last - 1 > gap)
            gap = f - last - 1;
        if (first < 0)
            first = f;
        last = f;
        on++;
    }
    if (on < 2) {
        out->span = (double)on * FRAME;
        return;
    }
    out->span = (double)(last - first + 1) * FRAME;
    out->pause = (double)gap * FRAME;
    out->steady = steady_seconds(sums, sounding, count, scratch, scratch + count + 1);
}

/* All five figures; -1 where memory ran out. */
static int measure_samples(const float *x, Py_ssize_t n, Py_ssize_t size, int speech, Figures *out) {
    Py_ssize_t count = n / size;
    /* sums, then two rows of running sums, then the sounding flags, then the frames' peaks */
    double *buffer = (double *)malloc(sizeof(double) * (size_t)(count + 1) * 5);
    if (buffer == NULL)
        return -1;
    double *sums = buffer, *scratch = buffer + count + 1;
    float *peaks = (float *)(buffer + 4 * (count + 1)), peak;
    frames(x, n, size, sums, peaks, &peak);
    double loudest = 0.0;
    for (Py_ssize_t f = 0; f < count; f++)
        loudest = sums[f] > loudest ? sums[f] : loudest;
    loudest /= (double)size;
    *out = (Figures){FLOOR_DB, 0.0, 0.0, 0.0, 0.0};
    if (loudest > 1e-10)
        out->peak_db = 10.0 * log10(loudest);
    out->clipped = clipped_share(x, n, size, peaks, peak);
    if (speech && count)
        speech_figures(sums, count, size, scratch, out);
    free(buffer);
    return 0;
}

static PyObject *measure(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer view;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "measure(samples, frame_size, speech) takes 3 arguments");
        return NULL;
    }
    Py_ssize_t size = PyLong_AsSsize_t(args[1]);
    int speech = PyObject_IsTrue(args[2]);
    if (PyErr_Occurred() || speech < 0)
        return NULL;
    if (size <= 0) {
        PyErr_SetString(PyExc_ValueError, "the frame size must be positive");
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_RECORDS_RO) < 0)
        return NULL;
    if (view.itemsize != 4 || view.format == NULL || strcmp(view.format, "f") != 0 || view.ndim != 1 ||
        !PyBuffer_IsContiguous(&view, 'C')) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_TypeError, "the samples must be a contiguous 1-D float32 array");
        return NULL;
    }
    Figures figures;
    int status;
    Py_BEGIN_ALLOW_THREADS
    status = measure_samples((const float *)view.buf, view.len / 4, size, speech, &figures);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    if (status < 0)
        return PyErr_NoMemory();
    return Py_BuildValue("(ddddd)", figures.peak_db, figures.clipped, figures.span, figures.pause, figures.steady);
}

/* ---------------------------------------------------------------- K-weighting biquads */

/* One cascade of second-order sections over signals rows of n samples each, in place: x holds the
 * input and receives the output; z (signals x sections x 2) the state, carried in and out.  The
 * arithmetic, in order, is scipy.signal.sosfilt's, so the figures are its figures. */
#define BIQUADS(NAME, T)                                                                               \
    static void NAME(const T *sos, Py_ssize_t sections, T *x, Py_ssize_t signals, Py_ssize_t n, T *z) { \
        for (Py_ssize_t i = 0; i < signals; i++) {                                                   \
            T *row = x + i * n, *state = z + i * sections * 2;                                       \
            if (sections == 2) {   /* K-weighting: the two sections' state kept in registers */      \
                const T b00 = sos[0], b01 = sos[1], b02 = sos[2], a01 = sos[4], a02 = sos[5];        \
                const T b10 = sos[6], b11 = sos[7], b12 = sos[8], a11 = sos[10], a12 = sos[11];      \
                T z00 = state[0], z01 = state[1], z10 = state[2], z11 = state[3];                    \
                for (Py_ssize_t k = 0; k < n; k++) {                                                 \
                    T in = row[k], mid = b00 * in + z00, out;                                        \
                    z00 = b01 * in - a01 * mid + z01;                                                \
                    z01 = b02 * in - a02 * mid;                                                      \
                    out = b10 * mid + z10;                                                           \
                    z10 = b11 * mid - a11 * out + z11;                                               \
                    z11 = b12 * mid - a12 * out;                                                     \
                    row[k] = out;                                                                    \
                }                                                                                    \
                state[0] = z00; state[1] = z01; state[2] = z10; state[3] = z11;                      \
                continue;                                                                            \
            }                                                                                        \
            for (Py_ssize_t k = 0; k < n; k++) {                                                     \
                T cur = row[k];                                                                      \
                for (Py_ssize_t s = 0; s < sections; s++) {                                          \
                    const T *c = sos + 6 * s;                                                        \
                    T *w = state + 2 * s, next = c[0] * cur + w[0];                                  \
                    w[0] = c[1] * cur - c[4] * next + w[1];                                          \
                    w[1] = c[2] * cur - c[5] * next;                                                 \
                    cur = next;                                                                      \
                }                                                                                    \
                row[k] = cur;                                                                        \
            }                                                                                        \
        }                                                                                            \
    }

BIQUADS(biquads_float, float)
BIQUADS(biquads_double, double)

/* A C-contiguous buffer of ndim dimensions in float32 ("f") or float64 ("d"), writable if asked. */
static int float_buffer(PyObject *obj, Py_buffer *view, int ndim, int writable, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_RECORDS_RO | (writable ? PyBUF_WRITABLE : 0)) < 0)
        return -1;
    if (view->ndim != ndim || view->format == NULL || (strcmp(view->format, "f") && strcmp(view->format, "d")) ||
        !PyBuffer_IsContiguous(view, 'C')) {
        PyErr_Format(PyExc_TypeError, "%s must be a C-contiguous %d-D float32 or float64 array", what, ndim);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

/* One buffer a function takes: its argument's position, dimensions, whether it is written, its name. */
typedef struct {
    int arg, ndim, writable;
    const char *name;
} Wanted;

static void release_buffers(Py_buffer *const *views, int count) {
    for (int i = 0; i < count; i++)
        PyBuffer_Release(views[i]);
}

/* Each wanted buffer of args into views (float_buffer's checks); on a refusal, the ones taken are released. */
static int float_buffers(PyObject *const *args, const Wanted *wanted, Py_buffer *const *views, int count) {
    for (int i = 0; i < count; i++) {
        if (float_buffer(args[wanted[i].arg], views[i], wanted[i].ndim, wanted[i].writable, wanted[i].name) < 0) {
            release_buffers(views, i);
            return -1;
        }
    }
    return 0;
}

static int overlap(const Py_buffer *a, const Py_buffer *b) {
    const char *p = (const char *)a->buf, *q = (const char *)b->buf;
    return a->len > 0 && b->len > 0 && p < q + b->len && q < p + a->len;
}

static PyObject *biquads(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer sos, x, z;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "biquads(sos, x, zi) takes 3 arguments");
        return NULL;
    }
    static const Wanted wanted[] = {{0, 2, 0, "sos"}, {1, 2, 1, "x"}, {2, 3, 1, "zi"}};
    Py_buffer *const views[] = {&sos, &x, &z};
    if (float_buffers(args, wanted, views, 3) < 0)
        return NULL;
    Py_ssize_t sections = sos.shape[0], signals = x.shape[0], n = x.shape[1];
    const char *problem = NULL;
    if (strcmp(sos.format, x.format) || strcmp(sos.format, z.format))
        problem = "sos, x and zi must have the same dtype";
    else if (sos.shape[1] != 6 || sections < 1)
        problem = "sos must have shape (sections, 6) with at least one section";
    else if (z.shape[0] != signals || z.shape[1] != sections || z.shape[2] != 2)
        problem = "zi must have shape (x.shape[0], sections, 2)";
    else if (overlap(&x, &z) || overlap(&x, &sos) || overlap(&z, &sos))
        problem = "sos, x and zi must not share memory";
    if (problem == NULL) {
        Py_BEGIN_ALLOW_THREADS
        if (x.itemsize == 4)
            biquads_float((const float *)sos.buf, sections, (float *)x.buf, signals, n, (float *)z.buf);
        else
            biquads_double((const double *)sos.buf, sections, (double *)x.buf, signals, n, (double *)z.buf);
        Py_END_ALLOW_THREADS
    }
    release_buffers(views, 3);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    Py_RETURN_NONE;
}

/* The true-peak reader's bounds (dialog_tts.finish.loudness._peak_bounds): for each frame of an
 * oversampled signal, the largest |point| of its `factor` points (the larger channel), the highest
 * frame of each window raised by the window's largest |curvature| / 8.  NumPy makes about a dozen
 * passes over the oversampled signal for these (differences, their differences, absolute values,
 * the maxima), each as long as eight times the audio; one pass here reads it once.  The arithmetic
 * is NumPy's, in float32 and in its order, so the figures are the same bit for bit (the tests hold
 * both to each other); a NaN anywhere hands the block back to NumPy, whose NaN rules it keeps.
 *
 * frame_points_float: one frame's points (count = factor * channels floats from p, interleaved), the point
 * before them at p - channels and after them at p + count: the largest |point| into *peak, the largest
 * |curvature| raised into *most; nonzero where a NaN came in (probe, the sum of the frame's figures, is
 * NaN exactly then: they are never negative, so the sum makes none of its own). */
static int frame_points_float(const float *p, Py_ssize_t count, Py_ssize_t channels, float *peak, float *most) {
    float top = 0.0f, bend = *most, probe = 0.0f;
    for (Py_ssize_t j = 0; j < count; j++) {
        float v = p[j], curve = fabsf((p[j + channels] - v) - (v - p[j - channels])), mag = fabsf(v);
        probe += curve + mag;
        bend = curve > bend ? curve : bend;
        top = mag > top ? mag : top;
    }
    *peak = top;
    *most = bend;
    return probe != probe;
}

static int peak_bounds_float(const float *up, Py_ssize_t points, Py_ssize_t channels, const float *before,
                             const float *after, Py_ssize_t factor, Py_ssize_t lead, Py_ssize_t window,
                             float *out) {
    Py_ssize_t n = points / factor, windows = (lead + n + window - 1) / window, width = factor * channels;
    /* the first and last frames read the points next to the block: they go through a padded copy */
    float *edge = (float *)malloc(sizeof(float) * (size_t)(width + 2 * channels));
    if (edge == NULL)
        return -1;
    for (Py_ssize_t w = 0; w < windows; w++) {
        Py_ssize_t f0 = w * window - lead, f1 = f0 + window;
        if (f0 < 0)
            f0 = 0;
        if (f1 > n)
            f1 = n;
        float most = 0.0f, best = 0.0f;
        Py_ssize_t at = w * window - lead;      /* the row's first position: a frame, or padding before them */
        for (Py_ssize_t f = f0; f < f1; f++) {
            float peak;
            const float *p = up + f * width;
            int nan;
            if (f == 0 || f == n - 1) {
                memcpy(edge, f == 0 ? before : p - channels, sizeof(float) * (size_t)channels);
                memcpy(edge + channels, p, sizeof(float) * (size_t)width);
                memcpy(edge + channels + width, f == n - 1 ? after : p + width, sizeof(float) * (size_t)channels);
                nan = frame_points_float(edge + channels, width, channels, &peak, &most);
            } else {
                nan = frame_points_float(p, width, channels, &peak, &most);
            }
            if (nan) {
                free(edge);
                return 0;
            }
            out[f] = peak;
            if (peak > best) {      /* the first frame of the row's highest value (argmax) */
                best = peak;
                at = f;
            }
        }
        if (at >= 0 && at < n)      /* an all-silent first row: the correction falls on its padding */
            out[at] += most * 0.125f;
    }
    free(edge);
    return 1;
}

static PyObject *peak_bounds(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer up, before, after, out;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "peak_bounds(up, before, after, factor, lead, window, out) takes 7 arguments");
        return NULL;
    }
    Py_ssize_t factor = PyLong_AsSsize_t(args[3]), lead = PyLong_AsSsize_t(args[4]),
               window = PyLong_AsSsize_t(args[5]);
    if (PyErr_Occurred())
        return NULL;
    static const Wanted wanted[] = {{0, 2, 0, "up"}, {1, 2, 0, "before"}, {2, 2, 0, "after"}, {6, 1, 1, "out"}};
    Py_buffer *const views[] = {&up, &before, &after, &out};
    if (float_buffers(args, wanted, views, 4) < 0)
        return NULL;
    Py_ssize_t points = up.shape[0], channels = up.shape[1];
    const char *problem = NULL;
    if (up.itemsize != 4 || before.itemsize != 4 || after.itemsize != 4 || out.itemsize != 4)
        problem = "up, before, after and out must be float32";
    else if (factor < 1 || window < 1 || lead < 0 || lead >= window || points % factor)
        problem = "factor and window must be positive, 0 <= lead < window, and up's points whole frames";
    else if (before.shape[0] != 1 || after.shape[0] != 1 || before.shape[1] != channels || after.shape[1] != channels)
        problem = "before and after must be one point of up's channels";
    else if (out.shape[0] != points / factor)
        problem = "out must hold one value a frame";
    else if (overlap(&out, &up) || overlap(&out, &before) || overlap(&out, &after))
        problem = "out must not share memory with the points";
    int done = 0;
    if (problem == NULL) {
        Py_BEGIN_ALLOW_THREADS
        done = peak_bounds_float((const float *)up.buf, points, channels, (const float *)before.buf,
                                 (const float *)after.buf, factor, lead, window, (float *)out.buf);
        Py_END_ALLOW_THREADS
        if (done < 0)
            PyErr_NoMemory();
    }
    release_buffers(views, 4);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    if (done < 0)
        return NULL;
    return PyBool_FromLong(done);
}

/* libebur128's interpolator's peaks (dialog_tts.finish.loudness._frame_points_numpy): for frames
 * 0 .. count-2 of x (count, channels), the largest |point| of each tap phase's output at the frame plus
 * offset (the larger channel).  NumPy sums each phase's 12 or 13 taps as that many shifted
 * multiply-adds over the block, about fifty passes (a hundred for stereo) over it for each call, and a
 * render reads thousands of short spans; one pass here.  The sums are NumPy's, in float32 and in its
 * order (the products rounded to float32, added tap by tap from zero), so the figures are the same bit
 * for bit (the tests hold both to each other); a NaN anywhere hands the block back to NumPy. */
static int frame_points_loop(const float *x, Py_ssize_t count, Py_ssize_t channels, const float *taps,
                             Py_ssize_t ntaps, Py_ssize_t factor, Py_ssize_t offset, float *out) {
    float probe = 0.0f;
    for (Py_ssize_t i = 0; i + 1 < count; i++)
        out[i] = 0.0f;
    for (Py_ssize_t c = 0; c < channels; c++) {
        for (Py_ssize_t phase = 0; phase < factor; phase++) {
            Py_ssize_t k_count = (ntaps - phase + factor - 1) / factor;
            for (Py_ssize_t i = 0; i + 1 < count; i++) {
                Py_ssize_t j = offset + i;
                float acc = 0.0f;
                for (Py_ssize_t k = 0; k < k_count; k++) {
                    Py_ssize_t at = j - k;
                    if (at >= 0 && at < count) {
                        float term = x[at * channels + c] * taps[phase + k * factor];
                        acc += term;
                    }
                }
                float y = fabsf(acc);
                probe += y;
                out[i] = y > out[i] ? y : out[i];
            }
        }
    }
    return probe != probe;
}

static PyObject *frame_points(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    Py_buffer data, taps, out;
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "frame_points(data, taps, factor, offset, out) takes 5 arguments");
        return NULL;
    }
    Py_ssize_t factor = PyLong_AsSsize_t(args[2]), offset = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred())
        return NULL;
    static const Wanted wanted[] = {{0, 2, 0, "data"}, {1, 1, 0, "taps"}, {4, 1, 1, "out"}};
    Py_buffer *const views[] = {&data, &taps, &out};
    if (float_buffers(args, wanted, views, 3) < 0)
        return NULL;
    Py_ssize_t count = data.shape[0], channels = data.shape[1], ntaps = taps.shape[0];
    const char *problem = NULL;
    if (data.itemsize != 4 || taps.itemsize != 4 || out.itemsize != 4)
        problem = "data, taps and out must be float32";
    else if (factor < 1 || offset < 0 || ntaps < 1 || channels < 1)
        problem = "factor must be positive, offset not negative, and taps and channels not empty";
    else if (out.shape[0] != (count > 0 ? count - 1 : 0))
        problem = "out must hold one value for each frame but the last";
    else if (overlap(&out, &data) || overlap(&out, &taps))
        problem = "out must not share memory with data or taps";
    int nan = 0;
    if (problem == NULL) {
        Py_BEGIN_ALLOW_THREADS
        nan = frame_points_loop((const float *)data.buf, count, channels, (const float *)taps.buf, ntaps, factor,
                                offset, (float *)out.buf);
        Py_END_ALLOW_THREADS
    }
    release_buffers(views, 3);
    if (problem != NULL) {
        PyErr_SetString(PyExc_ValueError, problem);
        return NULL;
    }
    return PyBool_FromLong(!nan);
}

static PyMethodDef methods[] = {
    {"measure", (PyCFunction)(void (*)(void))measure, METH_FASTCALL,
     "measure(samples, frame_size, speech) -> (peak_db, clipped, span, pause, steady)\n\n"
     "The quality gate's figures of a take: contiguous 1-D float32 samples, frames of frame_size samples."},
    {"biquads", (PyCFunction)(void (*)(void))biquads, METH_FASTCALL,
     "biquads(sos, x, zi) -> None\n\n"
     "Filter each row of x (signals, n) through the second-order sections sos (sections, 6), in place,\n"
     "with the state zi (signals, sections, 2) carried in and updated; one dtype, float32 or float64,\n"
     "all C-contiguous.  scipy.signal.sosfilt's arithmetic."},
    {"peak_bounds", (PyCFunction)(void (*)(void))peak_bounds, METH_FASTCALL,
     "peak_bounds(up, before, after, factor, lead, window, out) -> bool\n\n"
     "The true-peak reader's bounds (finish.loudness._peak_bounds) of the oversampled points up (points,\n"
     "channels), float32, into out (one a frame); False (out unfinished) where a NaN was met."},
    {"frame_points", (PyCFunction)(void (*)(void))frame_points, METH_FASTCALL,
     "frame_points(data, taps, factor, offset, out) -> bool\n\n"
     "libebur128's interpolator's peaks (finish.loudness._frame_points) of data (frames, channels), float32,\n"
     "into out (one for each frame but the last); False (out unfinished) where a NaN was met."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_takecheck", "The quality gate's figures of a take in one compiled pass; the K-weighting biquads; the true-peak bounds; libebur128's interpolator's peaks.", -1, methods,
};

PyMODINIT_FUNC PyInit__takecheck(void) { return PyModule_Create(&module); }
