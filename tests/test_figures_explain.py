"""Figures that explain themselves (#28 item 3): every figure function drawn on tiny synthetic inputs,
checked on the matplotlib Figure it returns — colourbars with a label where a map is shown, a legend
entry for every outline colour, labelled loss axes, ROC/PR curves of coinciding models still told apart,
legends off the data and panel titles that do not collide."""

from __future__ import annotations

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from adunet_lib.plotting import MAP_LABEL  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def drawn(fig):
    fig.canvas.draw()
    return fig.canvas.get_renderer()


def colourbars(fig) -> list:
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is not None]


def colourbar_labels(fig) -> list[str]:
    return [ax.get_ylabel() or ax.get_xlabel() for ax in colourbars(fig)]


def data_axes(fig) -> list:
    return [ax for ax in fig.axes if getattr(ax, "_colorbar", None) is None]


def legends(fig) -> list:
    return list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]


def legend_labels(fig) -> set[str]:
    return {t.get_text() for leg in legends(fig) for t in leg.get_texts()}


def assert_legends_off_the_data(fig) -> None:
    renderer = drawn(fig)
    for leg in legends(fig):
        box = leg.get_window_extent(renderer)
        for ax in data_axes(fig):
            assert not box.overlaps(ax.get_window_extent(renderer)), \
                f"legend {[t.get_text() for t in leg.get_texts()]} covers axes {ax.get_title()!r}"


def assert_titles_apart(fig) -> None:
    renderer = drawn(fig)
    titles = [(ax.title.get_text(), ax.title.get_window_extent(renderer)) for ax in fig.axes if ax.title.get_text()]
    if fig._suptitle is not None:
        titles.append((fig._suptitle.get_text(), fig._suptitle.get_window_extent(renderer)))
    for i, (a, box_a) in enumerate(titles):
        for b, box_b in titles[i + 1:]:
            assert not box_a.overlaps(box_b), f"titles collide: {a!r} and {b!r}"


def lesion_mask(size: int = 16) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[5:9, 6:10] = True
    return mask


def test_fig2_legend_names_box_gland_and_lesion():
    from adunet_lib.report.figures import preprocessing_figure

    rng = np.random.default_rng(0)
    gland = np.zeros((24, 24), bool)
    gland[4:20, 4:20] = True
    lesion = np.zeros((24, 24), bool)
    lesion[8:12, 8:12] = True
    seqs = ("t2w", "adc", "hbv")
    rows = [{"case_id": f"c{i}", "original": {s: rng.random((24, 24)) for s in seqs}, "box": (4, 4, 20, 20),
             "gland": gland, "lesion": lesion, "cropped": {s: rng.random((16, 16)) for s in seqs},
             "masked": {s: rng.random((16, 16)) for s in seqs}, "lesion_model": lesion_mask()} for i in range(2)]
    fig = preprocessing_figure(rows)
    assert {"crop box outline", "gland outline", "lesion outline"} <= legend_labels(fig)
    assert_legends_off_the_data(fig)
    assert_titles_apart(fig)


def viewer_inputs():
    rng = np.random.default_rng(1)
    volumes = {s: rng.random((6, 16, 16)) for s in ("t2w", "adc", "hbv")}
    gland = np.zeros((6, 16, 16), bool)
    gland[1:5, 3:13, 3:13] = True
    lesion = np.zeros((6, 16, 16), bool)
    lesion[2:4, 5:9, 6:10] = True
    anomaly = rng.random((6, 16, 16)) * gland
    detection = np.where(lesion, 0.7, 0.0)
    return volumes, {"gland": gland, "lesion": lesion, "anomaly": anomaly, "detection": detection}


def test_viewer_png_has_colourbars_legend_and_names_the_map():
    from adunet_lib.report.viewer import case_viewer

    volumes, overlays = viewer_inputs()
    fig = case_viewer(volumes, overlays, interactive=False, title="case1 — best",
                      labels={"anomaly": "FP GAN · ADC", "detection": "adU-Net(all bpMRI)"})
    labels = colourbar_labels(fig)
    assert len(labels) == 2
    assert any(MAP_LABEL in lab and "FP GAN · ADC" in lab for lab in labels), labels
    assert any("detection" in lab and "adU-Net(all bpMRI)" in lab for lab in labels), labels
    assert {"gland outline", "lesion outline"} <= legend_labels(fig)
    assert "FP GAN · ADC" in fig._suptitle.get_text()
    assert_legends_off_the_data(fig)
    assert_titles_apart(fig)


def test_viewer_without_maps_has_a_legend_and_no_colourbar(tmp_path):
    from adunet_lib.report.viewer import case_viewer

    volumes, overlays = viewer_inputs()
    fig = case_viewer(volumes, {"gland": overlays["gland"], "lesion": overlays["lesion"]}, interactive=False,
                      title="case1", save_to=tmp_path / "viewer_preprocessing.png")
    assert (tmp_path / "viewer_preprocessing.png").is_file()
    assert not colourbars(fig)
    assert legend_labels(fig) == {"gland outline", "lesion outline"}


def test_loss_plot_has_axis_labels_and_a_legend_per_curve(tmp_path):
    from adunet_lib.anomaly_models.stage import loss_figure

    for folder in ("all_cropped", "t2w_cropped"):
        (tmp_path / "dense_ae" / folder).mkdir(parents=True)
        pd.DataFrame({"iteration": [1, 2, 3], "lr": [1e-3] * 3, "rec": [1.0, 0.5, 0.2], "kl": [0.3, 0.2, 0.1]}).to_csv(
            tmp_path / "dense_ae" / folder / "losses.csv", index=False)
    fig = loss_figure(SimpleNamespace(models_dir=tmp_path), "dense_ae")
    assert len(fig.axes) == 2
    for ax in fig.axes:
        assert ax.get_ylabel() == "loss" and ax.get_xlabel() == "iteration"
        assert {t.get_text() for t in ax.get_legend().get_texts()} == {"all_cropped", "t2w_cropped"}
    assert_titles_apart(fig)


def curves():
    x = np.linspace(0, 1, 20)
    return SimpleNamespace(case_FPR=x, case_TPR=np.sqrt(x), auroc=0.8, recall=x, precision=1 - 0.5 * x, AP=0.7)


def test_roc_pr_tell_coinciding_models_apart_and_keep_legends_off_the_curves():
    from adunet_lib.evaluation.stage import roc_pr_figure

    same = curves()
    fig = roc_pr_figure({"baseline": same, "adunet_all": same, "adunet_t2w": same}, "test")
    for ax in fig.axes:
        lines = [line for line in ax.get_lines() if not line.get_label().startswith(("_", "chance"))]
        assert len(lines) == 3
        looks = {(line.get_linestyle(), line.get_marker()) for line in lines}
        assert len(looks) == 3, looks
        assert all(line.get_marker() not in (None, "None", "") for line in lines)
    assert any("nnU-Net baseline" in t for t in legend_labels(fig))
    assert_legends_off_the_data(fig)
    assert_titles_apart(fig)


def test_forest_panels_titled_apart():
    from adunet_lib.evaluation.stage import forest_figure

    rows = [{"model": m, "metric": k, "delta": 0.01 * i, "lo": -0.05, "hi": 0.08, "p_value": 0.4}
            for i, m in enumerate(["adunet_t2w", "adunet_adc", "adunet_all"]) for k in ("auroc", "ap", "score")]
    fig = forest_figure(pd.DataFrame(rows), "test")
    titled = [ax.get_title() for ax in fig.axes]
    assert titled == ["Δ AUROC", "Δ AP", "Δ Average"]
    assert all(ax.get_xlabel() for ax in fig.axes)
    assert_titles_apart(fig)


def test_fig4_colourbar_column_titles_and_lesion_legend():
    from adunet_lib.anomaly_maps.stage import draw_figure4

    rng = np.random.default_rng(2)
    models = ["fpgan", "ddpm"]
    panels = [{"case_id": f"case{i}", "images": rng.random((3, 16, 16)), "lesion": lesion_mask(),
               "recs": {m: rng.random((3, 16, 16)) for m in models},
               "maps": {m: rng.random((3, 16, 16)) * 0.3 for m in models}} for i in range(2)]
    fig = draw_figure4(panels, models)
    labels = colourbar_labels(fig)
    assert len(labels) == 2 and all(MAP_LABEL in lab for lab in labels), labels
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes]
    assert "map FP GAN · ADC" in titles
    assert any(t.startswith("map Diffusion Model") and t.endswith("· DWI") for t in titles), titles
    assert legend_labels(fig) == {"lesion outline"}
    assert_legends_off_the_data(fig)
    assert_titles_apart(fig)


def test_figures_of_a_run(tiny_run):
    """Fig. 3, Fig. 4 and the loss plot drawn from a real (tiny) run folder."""
    from adunet_lib.anomaly_maps.stage import figure4
    from adunet_lib.anomaly_models.stage import figure3, figure3_slices, loss_figure

    ctx, tables = tiny_run
    fig = figure4(ctx, tables.cases, tables.slices, ["dense_ae"], kernel_size=4, patients=1)
    assert len(colourbar_labels(fig)) == 1 and MAP_LABEL in colourbar_labels(fig)[0]
    assert "lesion outline" in legend_labels(fig)
    assert_titles_apart(fig)
    fig = figure3(ctx, ["dense_ae"], figure3_slices(ctx, tables.slices, 2))
    assert "Vanilla AE" in {ax.get_title() for ax in fig.axes}
    assert "lesion outline" in legend_labels(fig)
    assert_legends_off_the_data(fig)
    assert_titles_apart(fig)
    fig = loss_figure(ctx, "dense_ae")
    assert all(ax.get_ylabel() == "loss" for ax in fig.axes)
