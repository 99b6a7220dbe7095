"""Bundle folders are readable by anyone once exported: folders 0755, files 0644, whatever
the umask (the temporary folder an export builds in is created 0700; issue 13)."""

from __future__ import annotations

import os
import stat

import pytest

from export.staging import staged_folder


def modes(folder):
    """``{relative path: permission bits}`` of ``folder`` and everything in it."""
    paths = [folder, *sorted(folder.rglob("*"))]
    return {str(p.relative_to(folder)): stat.S_IMODE(p.stat().st_mode) for p in paths}


def test_an_exported_bundle_is_readable_by_a_non_root_user(tiny_bundle):
    found = modes(tiny_bundle)
    assert found["."] == 0o755 and found["manifest.json"] == 0o644
    assert {found[p] for p in found if (tiny_bundle / p).is_dir()} == {0o755}
    assert {found[p] for p in found if (tiny_bundle / p).is_file()} == {0o644}
    assert any(p.endswith(".onnx") for p in found) and any(p.endswith(".pt") for p in found)


@pytest.mark.parametrize("umask", [0o077, 0o022])
def test_the_staged_folder_ends_0755_with_files_0644_whatever_the_umask(tmp_path, umask):
    previous = os.umask(umask)
    try:
        with staged_folder(tmp_path / "bundle") as tmp:
            assert stat.S_IMODE(tmp.stat().st_mode) == 0o700  # what mkdtemp makes
            (tmp / "seg").mkdir()
            (tmp / "seg" / "fold0.onnx").write_bytes(b"model")
            (tmp / "manifest.json").write_text("{}")
            (tmp / "link.onnx").symlink_to("seg/fold0.onnx")
    finally:
        os.umask(previous)
    assert modes(tmp_path / "bundle") == {
        ".": 0o755,
        "link.onnx": 0o644,  # the file it points to
        "manifest.json": 0o644,
        "seg": 0o755,
        "seg/fold0.onnx": 0o644,
    }
