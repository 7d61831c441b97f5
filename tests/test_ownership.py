"""artefact.ownership: what counts as ours (content matching a record of ours) and what never does
(a name, a link, a copied marker, a forged path). Plain files in a temp folder; well under a second."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from artefact import ownership


def test_a_file_is_ours_only_while_its_content_is_what_we_noted(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").write_bytes(b"what we wrote")
    ownership.record(tmp_path, {"a.onnx": None}, "artefact")
    assert ownership.is_ours(tmp_path / "a.onnx")
    (tmp_path / "a.onnx").write_bytes(b"edited by its user")
    assert not ownership.is_ours(tmp_path / "a.onnx")
    assert not ownership.remove_if_ours(tmp_path / "a.onnx") and (tmp_path / "a.onnx").exists()
    (tmp_path / "a.onnx").write_bytes(b"what we wrote")
    assert ownership.remove_if_ours(tmp_path / "a.onnx") and not (tmp_path / "a.onnx").exists()
    assert ownership.recorded(tmp_path) == {}  # forgotten with it


def test_links_fifos_and_folders_are_never_ours(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"x")
    os.symlink(tmp_path / "target", tmp_path / "link")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    digest = ownership.sha256_of(tmp_path / "target")
    ownership.record(tmp_path, {"link": digest, "fifo": digest, "dir": digest}, "artefact")
    for name in ("link", "fifo", "dir"):  # a FIFO must not block the check
        assert not ownership.is_ours(tmp_path / name)
        assert not ownership.remove_if_ours(tmp_path / name)
    assert (tmp_path / "target").read_bytes() == b"x" and os.path.islink(tmp_path / "link")


def test_a_forged_record_never_reaches_outside_its_folder(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    (tmp_path / "precious").write_bytes(b"outside")
    digest = ownership.sha256_of(tmp_path / "precious")
    (inner / ownership.RECORD).write_text(json.dumps({"format": ownership.RECORD_FORMAT, "files": {
        "../precious": {"sha256": digest, "role": "artefact"}, "/etc/hostname": {"sha256": digest}}}))
    assert ownership.recorded(inner) == {}
    assert not ownership.remove_if_ours(inner / ".." / "precious", base=inner)
    assert (tmp_path / "precious").exists()


def test_a_user_file_at_the_record_name_is_refused(tmp_path: Path) -> None:
    (tmp_path / ownership.RECORD).write_text("my notes\n")
    (tmp_path / "a").write_bytes(b"a")
    with pytest.raises(ownership.NotOurs, match="left alone"):
        ownership.record(tmp_path, {"a": None}, "kept")
    assert (tmp_path / ownership.RECORD).read_text() == "my notes\n"


def test_a_work_marker_proves_only_the_folder_it_was_written_in(tmp_path: Path) -> None:
    work = Path(tempfile.mkdtemp(prefix=".x.build-", dir=tmp_path))
    ownership.mark_work_dir(work, "build")
    assert ownership.is_work_dir(work)
    copy = tmp_path / ".y.build-12345678"
    copy.mkdir()
    shutil.copy(work / ownership.WORK_MARKER, copy / ownership.WORK_MARKER)
    moved = tmp_path / ".x.build-renamed"
    os.rename(work, moved)  # same inode, another name: a folder someone made to look like ours
    assert not ownership.is_work_dir(copy) and not ownership.is_work_dir(moved)
    assert not ownership.remove_work_dir(copy) and copy.exists()
    os.symlink(moved, tmp_path / ".z.build-link")
    assert not ownership.is_work_dir(tmp_path / ".z.build-link")


def test_a_published_folder_is_ours_only_while_it_holds_nothing_else(tmp_path: Path) -> None:
    model = tmp_path / "demo"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"m")
    (model / "config.pbtxt").write_text("name: 'demo'\n")
    ownership.record_tree(model, "triton model")
    assert ownership.foreign_in_tree(model) == [] and ownership.changed_in_tree(model) == []
    (model / "2").mkdir()
    assert ownership.foreign_in_tree(model) == ["2/"]
    assert not ownership.remove_tree_if_ours(model) and model.exists()
    (model / "2").rmdir()
    (model / "config.pbtxt").write_text("tuned\n")
    assert ownership.changed_in_tree(model) == ["config.pbtxt"]
    assert not ownership.remove_tree_if_ours(model)
    (model / "config.pbtxt").write_text("name: 'demo'\n")
    assert ownership.remove_tree_if_ours(model) and not model.exists()
