"""Which decoder feeds the pipeline: decord, PyAV or an FFmpeg pipe (docs/decoding.md).

Each candidate decodes every frame of the same movie and delivers it as RGB at the working
resolution (short side 224 px), the way extraction needs it; ``ffmpeg -f null`` (decode only,
nothing converted) is the reference. One run on one machine; prints seconds and ratios:

    python bench/bench_decoders.py MOVIE
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

from mega_pipe.pipeline.decode import MovieDecoder, ffmpeg_exe, working_size
from mega_pipe.pipeline.probe import probe


def ffmpeg_null(path: str) -> int:
    subprocess.run([ffmpeg_exe(), "-nostdin", "-v", "error", "-i", path, "-map", "0:v:0", "-f", "null", "-"],
                   check=True)
    return -1


def mega_pipe_pipe(path: str) -> int:
    with MovieDecoder(probe(path), 224, audio=False) as dec:
        return sum(1 for _ in dec.frames())


def pyav(path: str) -> int:
    import av

    w, h = working_size(probe(path), 224)
    with av.open(path) as c:
        s = c.streams.video[0]
        s.thread_type = "AUTO"
        return sum(1 for f in c.decode(s) if f.to_ndarray(width=w, height=h, format="rgb24",
                                                          interpolation="AREA") is not None)


def decord_reader(path: str) -> int:
    import decord  # not a dependency (docs/decoding.md): `pip install decord` to compare

    w, h = working_size(probe(path), 224)
    vr = decord.VideoReader(path, width=w, height=h, num_threads=0)
    n = 0
    for i in range(0, len(vr), 64):
        n += len(vr.get_batch(list(range(i, min(i + 64, len(vr))))).asnumpy())
    return n


def main() -> None:
    path = sys.argv[1]
    res = {}
    for name, fn in (("ffmpeg -f null (decode only)", ffmpeg_null), ("FFmpeg pipe (mega-pipe)", mega_pipe_pipe),
                     ("PyAV decode + reformat", pyav), ("decord get_batch", decord_reader)):
        t0 = time.perf_counter()
        frames = fn(path)
        res[name] = {"seconds": round(time.perf_counter() - t0, 2), "frames": frames}
    base = res["ffmpeg -f null (decode only)"]["seconds"]
    for r in res.values():
        r["ratio"] = round(r["seconds"] / base, 3)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
