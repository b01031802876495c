// FFmpeg headers framepipe uses, plus inline helpers for the macros Swift cannot import.
#ifndef FRAMEPIPE_CFFMPEG_SHIM_H
#define FRAMEPIPE_CFFMPEG_SHIM_H
#include <libavformat/avformat.h>
#include <libavcodec/avcodec.h>
#include <libswscale/swscale.h>
#include <libavutil/avutil.h>
#include <libavutil/imgutils.h>
#include <libavutil/display.h>
#include <libavutil/error.h>
#include <libavutil/opt.h>
#include <libavutil/pixdesc.h>

/// AVERROR(EAGAIN) as a value (the macro is not importable).
static inline int fp_averror_eagain(void) { return AVERROR(EAGAIN); }
/// AVERROR_EOF as a value.
static inline int fp_averror_eof(void) { return AVERROR_EOF; }
/// AVERROR(e) for an errno value.
static inline int fp_averror(int e) { return AVERROR(e); }
/// AVERROR_INVALIDDATA as a value.
static inline int fp_averror_invaliddata(void) { return AVERROR_INVALIDDATA; }
/// AVERROR_EXIT as a value (what an interrupted read returns).
static inline int fp_averror_exit(void) { return AVERROR_EXIT; }
/// AVERROR_DECODER_NOT_FOUND as a value.
static inline int fp_averror_decoder_not_found(void) { return AVERROR_DECODER_NOT_FOUND; }
/// AVERROR_STREAM_NOT_FOUND as a value.
static inline int fp_averror_stream_not_found(void) { return AVERROR_STREAM_NOT_FOUND; }
/// AV_NOPTS_VALUE as a value.
static inline int64_t fp_nopts_value(void) { return AV_NOPTS_VALUE; }
/// AV_TIME_BASE as a value.
static inline int fp_time_base(void) { return AV_TIME_BASE; }

/// sws_scale of a whole frame into one packed destination plane (e.g. rgb24).
/// Swift cannot pass AVFrame's fixed-size `data`/`linesize` arrays as `const uint8_t *const[]` directly.
static inline int fp_sws_scale_frame(struct SwsContext *ctx, const AVFrame *frame,
                                     uint8_t *dst, int dst_stride) {
    uint8_t *dst_planes[4] = { dst, NULL, NULL, NULL };
    int dst_strides[4] = { dst_stride, 0, 0, 0 };
    return sws_scale(ctx, (const uint8_t *const *)frame->data, frame->linesize, 0, frame->height,
                     dst_planes, dst_strides);
}
#endif
