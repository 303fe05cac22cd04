"""The memory profile's readings of the JDK's own tools, on their real output (OpenJDK 17)."""

from __future__ import annotations

import pytest

from bench import profile_memory

HEAP_INFO = """29308:
 garbage-first heap   total 524288K, used 180203K [0x00000000e0000000, 0x0000000100000000)
  region size 1024K, 22 young (22528K), 2 survivors (2048K)
 Metaspace       used 42737K, committed 43392K, reserved 1114112K
  class space    used 5032K, committed 5312K, reserved 1048576K
"""

NMT_SUMMARY = """29913:

Native Memory Tracking:

(Omitting categories weighting less than 1KB)

Total: reserved=7845128KB, committed=487344KB
       malloc: 12736KB #61058
       mmap:   reserved=7832392KB, committed=474608KB

-                 Java Heap (reserved=6172672KB, committed=397312KB)
                            (mmap: reserved=6172672KB, committed=397312KB)

-                     Class (reserved=1048783KB, committed=1359KB)
                            (classes #2498)
                            (malloc=207KB #3897) (at peak)

-                    Thread (reserved=13677KB, committed=602KB)
                            (thread #14)

-                        GC (reserved=273550KB, committed=54086KB)
                            (malloc=5225KB #454) (at peak)
"""


def test_heap_in_use_and_committed_from_gc_heap_info_not_the_metaspace_line() -> None:
    assert profile_memory.heap_mb(HEAP_INFO) == {"committed": 512.0, "used": pytest.approx(175.98, abs=0.01)}


def test_nmt_total_and_categories_committed_in_mb() -> None:
    found = profile_memory.nmt_committed_mb(NMT_SUMMARY)
    assert found["total"] == pytest.approx(475.92, abs=0.01)
    assert found["Java Heap"] == 388.0
    assert found["GC"] == pytest.approx(52.82, abs=0.01)
    assert set(found) == {"total", "Java Heap", "Class", "Thread", "GC"}


def test_a_jvm_without_native_memory_tracking_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="NativeMemoryTracking"):
        profile_memory.nmt_committed_mb("29913:\nNative memory tracking is not enabled\n")


def test_markdown_sums_the_peaks_into_the_stacks_and_shows_nmt_where_it_was_read() -> None:
    nmt = {"total": 400, "Java Heap": 250, "Class": 60, "Metaspace": 50}
    nmt = {"total": 400, "Java Heap": 250, "Class": 60, "Metaspace": 50}
    runtime = {"rss_mb": 500, "peak_rss_mb": 540, "heap_mb": {"used": 100, "committed": 250},
               "nmt_committed_mb": nmt, "outside_nmt_mb": 100}  # fmt: skip
    kafka = {"rss_mb": 300, "peak_rss_mb": 310, "heap_mb": {"used": 150, "committed": 512}}
    greeter = {"rss_mb": 120, "peak_rss_mb": 125}
    result = {"phases": {"idle": {"processes": {"runtime": runtime, "kafka": kafka, "greeter": greeter}}}}
    lines = profile_memory.markdown(result)
    assert "| idle | runtime | 500 | 540 | 100 / 250 | 100 |" in lines
    assert "| idle | greeter | 120 | 125 | - | - |" in lines
    assert "| idle | **the stack** | | **975** | | |" in lines
    assert "| idle | runtime | 400 | 250 | 60 | 50 | 0 | 0 | 0 | 0 | 0 | 0 | 40 |" in lines
    nmt_rows = lines[lines.index("") + 3 :]
    assert [row.split(" | ")[1] for row in nmt_rows] == ["runtime"]  # only the processes NMT was read from
