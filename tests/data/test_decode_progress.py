"""Decoding an image folder shows a count: a tqdm bar on a terminal, lines elsewhere."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from spikedistill.data import readers


def _folder(root, n_per_class=6):
    for split in ("train", "test"):
        for c in ("a", "b"):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(n_per_class):
                Image.fromarray(np.full((4, 4, 3), i * 10, dtype=np.uint8)).save(d / f"{i}.png")
    return root


def test_decoding_a_folder_reports_a_count(tmp_path, capsys):
    data = readers.read_image_folder(_folder(tmp_path / "imgs"))
    assert len(data.train_labels) == 12 and len(data.test_labels) == 12
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "decoding imgs: 0/24 images"
    assert err[-1] == "decoding imgs: 24/24 images"
    counts = [int(line.split(": ")[1].split("/")[0]) for line in err]
    assert counts == sorted(counts) and len(err) <= 12


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_with_the_count():
    stream = _Tty()
    bar = readers.DecodeProgress(24, "decoding x", stream=stream)
    for _ in range(24):
        bar.update()
    bar.close()
    assert "decoding x" in stream.getvalue() and "24/24" in stream.getvalue()
    quiet = io.StringIO()
    readers.DecodeProgress(0, "nothing", stream=quiet).close()
    assert quiet.getvalue() == ""
