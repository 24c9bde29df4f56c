"""compositor: pure media functions over files — stitch, composite, outputs.

    stitch(sources, out)                       remux a track's chunks on the timeline
    composite_window(participants, i, W, out)  grid / speaker / client window → MP4
    concat_windows(paths, W, out)              windows → one MP4 by stream copy
    window_hls / hls_playlist                  HLS segments per window + VOD playlist
    probe(path)                                what a file really holds (InvalidMedia if not media)
    align_tracks / plan_sources / render_plan  two sources of one participant → one track (reconcile)

Imports only `core`. Pure planning lives in `timing`, `layout`, `windows`, `container`.
"""
from compositor.composite import CompositeOptions, Participant, composite_window
from compositor.outputs import concat_windows, hls_playlist, window_hls
from compositor.probe import probe
from compositor.reconcile import SourceSpan, align_tracks, plan_sources, render_plan, source_by_second
from compositor.stitch import Source, stitch

__all__ = ["CompositeOptions", "Participant", "Source", "SourceSpan", "align_tracks", "composite_window",
           "concat_windows", "hls_playlist", "plan_sources", "probe", "render_plan", "source_by_second", "stitch",
           "window_hls"]
