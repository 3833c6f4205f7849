"""save_figure writes through the atomic writer: a whole PNG or nothing."""

import pytest

from spikedistill.analysis.figures import pyplot, save_figure
from spikedistill.atomic import WriteError


def test_save_figure_is_atomic(tmp_path):
    plt = pyplot()
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    out = save_figure(fig, tmp_path / "sub" / "f.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.parent.iterdir()) == ["f.png"]   # no temp file left

    fig, ax = plt.subplots()
    (tmp_path / "file").write_text("x")
    with pytest.raises(WriteError, match="file"):
        save_figure(fig, tmp_path / "file" / "g.png")          # parent is a file
    assert not plt.fignum_exists(fig.number)                    # closed on failure too
