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
/// AV_NOPTS_VALUE as a value.
static inline int64_t fp_nopts_value(void) { return AV_NOPTS_VALUE; }
/// AV_TIME_BASE as a value.
static inline int fp_time_base(void) { return AV_TIME_BASE; }
#endif
