"""Rolling plots: acceleration and angular rate per sensor, joint angles with ground truth,
and joint torques when the viewer has a ``torque`` input (``chain.torque``).

Reads :class:`SampleRings` filled by the bus thread; call :meth:`SignalPlots.refresh` from
the Qt thread (about 30 Hz). Units at the UI: m/s^2, deg/s, deg, N m; time in s before now.
The torque plot shows the rotational degrees of freedom (N m) of the stream; translational
ones (N: prismatic joints, a free root's force) are left out.

Each curve gets at most two points per pixel column (min and max, :func:`peak_decimate`);
the y ranges move in 1-2-5 steps only when the data needs it (:class:`StickyRange`), with
the ticks and a plain grid set from the same values, so a refresh repaints the curves and
not the axes. (pyqtgraph's own ``showGrid`` draws the grid with the axes, which then repaint
the whole plot area on every refresh: with Qt's software rasteriser that halved the frame
rate of the window.)
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from nodes.view.plot_decimation import StickyRange, peak_decimate, tick_values
from nodes.view.sample_ring import SampleRings

AXIS_COLORS = ((230, 80, 80), (90, 200, 90), (90, 140, 240))
ANGLE_COLORS = ((240, 170, 60), (80, 200, 220), (220, 110, 220), (170, 220, 90), (240, 120, 120),
                (150, 150, 255))
ALL_SENSORS = "all sensors"
GRID_PEN = (62, 67, 76)
MIN_SPAN = {"acc": 2.0, "gyr": 20.0, "angle": 10.0, "torque": 2.0}  # smallest y range shown:
# m/s^2, deg/s, deg, N m
TORQUE_LEGEND_MAX = 12  # degrees of freedom named in the torque plot's legend (chain24 has 70)


class SignalPlots(QtWidgets.QWidget):
    """Three stacked plots sharing the time axis (four with torques), plus a sensor selector.

    ``torque``: make the torque plot at once (the viewer has a ``torque`` input); without it
    the plot is added when the first torques arrive.
    """

    def __init__(self, rings: SampleRings, hinge_names: tuple[str, ...],
                 parent: QtWidgets.QWidget | None = None, torque: bool = False) -> None:
        super().__init__(parent)
        self.rings, self.hinge_names = rings, hinge_names
        pg.setConfigOptions(antialias=False, background="#1e2127", foreground="#d0d4da")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("IMU signals of"))
        self.sensor_box = QtWidgets.QComboBox()
        self.sensor_box.addItem(ALL_SENSORS)
        row.addWidget(self.sensor_box, 1)
        layout.addLayout(row)
        self.graphics = pg.GraphicsLayoutWidget()
        layout.addWidget(self.graphics, 1)
        w = rings.window_s
        self._grids: dict[str, pg.PlotCurveItem] = {}
        self._ranges: dict[str, StickyRange] = {}
        self.acc_plot = self._plot(0, "acceleration (sensor frame)", "acc", "m/s²", w)
        self.gyr_plot = self._plot(1, "angular rate (sensor frame)", "gyr", "deg/s", w)
        self.angle_plot = self._plot(2, "joint angles (solid: estimate, dashed: truth)", "angle",
                                     "deg", w)
        self.angle_plot.setLabel("bottom", "time before now", units="s")
        self.angle_plot.getAxis("bottom").enableAutoSIPrefix(False)
        self.gyr_plot.setXLink(self.acc_plot)
        self.angle_plot.setXLink(self.acc_plot)
        self.imu_curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        self.angle_curves: dict[tuple[str, int], pg.PlotDataItem] = {}
        self.torque_plot: pg.PlotItem | None = None
        self.torque_curves: dict[int, pg.PlotDataItem] = {}
        self.samples_drawn = 0
        self.torque_samples_drawn = 0
        if torque:
            self._add_torque_plot()

    def _add_torque_plot(self) -> None:
        """The fourth plot, below the angles; the time axis label moves down to it."""
        p = self._plot(3, "joint torques (inverse dynamics)", "torque", "N m", self.rings.window_s)
        p.setXLink(self.acc_plot)
        self.angle_plot.setLabel("bottom", "")
        p.setLabel("bottom", "time before now", units="s")
        p.getAxis("bottom").enableAutoSIPrefix(False)
        self.torque_plot = p

    def _plot(self, row: int, title: str, label: str, unit: str, window_s: float) -> pg.PlotItem:
        p = self.graphics.addPlot(row=row, col=0, title=title)
        p.setLabel("left", label, units=unit)
        p.getAxis("left").enableAutoSIPrefix(False)
        p.disableAutoRange()
        p.setXRange(-window_s, 0.0, padding=0)
        p.setMouseEnabled(x=False, y=False)
        p.hideButtons()
        p.addLegend(offset=(-5, 5), labelTextSize="8pt", colCount=3)
        grid = pg.PlotCurveItem(connect="pairs", pen=pg.mkPen(GRID_PEN, width=1))
        grid.setZValue(-10)
        p.addItem(grid, ignoreBounds=True)
        self._grids[label] = grid
        self._ranges[label] = StickyRange(MIN_SPAN[label])
        xt = tick_values(-window_s, 0.0)
        p.getAxis("bottom").setTicks([[(v, f"{v:g}") for v in xt]])
        self._set_y_range(p, label, -MIN_SPAN[label] / 2, MIN_SPAN[label] / 2)
        return p

    def _set_y_range(self, plot: pg.PlotItem, label: str, lo: float, hi: float) -> None:
        """Y range, left ticks and grid lines of one plot (x grid every bottom tick)."""
        plot.setYRange(lo, hi, padding=0)
        yt = tick_values(lo, hi)
        plot.getAxis("left").setTicks([[(v, f"{v:g}") for v in yt]])
        w = self.rings.window_s
        xt = tick_values(-w, 0.0)
        xs = np.concatenate([np.repeat(xt, 2), np.tile([-w, 0.0], len(yt))])
        ys = np.concatenate([np.tile([lo, hi], len(xt)), np.repeat(yt, 2)])
        self._grids[label].setData(xs, ys)

    def _fit_y(self, plot: pg.PlotItem, label: str, columns: list[np.ndarray]) -> None:
        """Let the plot's sticky y range follow the data drawn (finite values only)."""
        finite = [c[np.isfinite(c)] for c in columns]
        finite = [c for c in finite if len(c)]
        if not finite:
            return
        changed = self._ranges[label].update(min(float(c.min()) for c in finite),
                                             max(float(c.max()) for c in finite))
        if changed is not None:
            self._set_y_range(plot, label, *changed)

    def _pixels(self, plot: pg.PlotItem) -> int:
        """Width of the plot's data area in device pixels (at least 50)."""
        return max(int(plot.vb.width() * self.devicePixelRatioF()), 50)

    def _imu_curve(self, name: str, k: int, index: int) -> pg.PlotDataItem:
        key = (name, k)
        curve = self.imu_curves.get(key)
        if curve is None:
            axis = "xyz"[k % 3]
            style = pg.QtCore.Qt.PenStyle.SolidLine if index % 2 == 0 else pg.QtCore.Qt.PenStyle.DashLine
            pen = pg.mkPen(AXIS_COLORS[k % 3], width=1, style=style)
            plot = self.acc_plot if k < 3 else self.gyr_plot
            curve = plot.plot(pen=pen, name=f"{name} {axis}")
            self.imu_curves[key] = curve
        return curve

    def _angle_curve(self, kind: str, j: int) -> pg.PlotDataItem:
        key = (kind, j)
        curve = self.angle_curves.get(key)
        if curve is None:
            color = ANGLE_COLORS[j % len(ANGLE_COLORS)]
            label = self.hinge_names[j] if j < len(self.hinge_names) else f"hinge {j}"
            if kind == "truth":
                pen = pg.mkPen(color, width=1, style=pg.QtCore.Qt.PenStyle.DashLine)
                label += " truth"
            else:
                pen = pg.mkPen(color, width=2)
            curve = self.angle_plot.plot(pen=pen, name=label)
            self.angle_curves[key] = curve
        return curve

    def _torque_curve(self, j: int, shown: int) -> pg.PlotDataItem:
        curve = self.torque_curves.get(j)
        if curve is None:
            dofs = self.rings.torque_dofs
            name = (dofs[j] if j < len(dofs) else f"dof {j}") if shown < TORQUE_LEGEND_MAX else None
            pen = pg.mkPen(ANGLE_COLORS[shown % len(ANGLE_COLORS)], width=2)
            curve = self.torque_plot.plot(pen=pen, name=name)
            self.torque_curves[j] = curve
        return curve

    def _refresh_torques(self, since: int, now_ns: int, px: int) -> int:
        """Draw the torque ring (N m columns only); returns the samples read."""
        ring = self.rings.torque.get("tau")
        if ring is None:
            return 0
        if self.torque_plot is None:
            self._add_torque_plot()
        w = self.rings.window_s
        t, v = ring.snapshot(since)
        x, v = peak_decimate((t - now_ns) * 1e-9, v, -w, 0.0, px)
        cols = [j for j, u in enumerate(self.rings.torque_units) if u == "N m"]
        for shown, j in enumerate(cols):
            self._torque_curve(j, shown).setData(x, v[:, j])
        self._fit_y(self.torque_plot, "torque", [v[:, cols]] if cols else [])
        self.torque_samples_drawn = len(t)
        return len(t)

    def refresh(self, now_ns: int | None = None) -> None:
        """Redraw every curve from the rings: x = time before now in s, peak-decimated."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        w = self.rings.window_s
        since = now_ns - int(w * 1e9)
        names = self.rings.names()
        for name in names:
            if self.sensor_box.findText(name) < 0:
                self.sensor_box.addItem(name)
        chosen = self.sensor_box.currentText()
        px = self._pixels(self.acc_plot)
        drawn = 0
        acc_cols: list[np.ndarray] = []
        gyr_cols: list[np.ndarray] = []
        for index, name in enumerate(names):
            show = chosen in (ALL_SENSORS, name)
            t, v = self.rings.imu[name].snapshot(since if show else now_ns + 1)
            drawn += len(t)
            x, v = peak_decimate((t - now_ns) * 1e-9, v, -w, 0.0, px)
            acc, gyr = v[:, :3], np.degrees(v[:, 3:])
            for k in range(6):
                curve = self._imu_curve(name, k, index)
                curve.setVisible(show)
                curve.setData(x, acc[:, k] if k < 3 else gyr[:, k - 3])
            if show:
                acc_cols.append(acc)
                gyr_cols.append(gyr)
        angle_cols: list[np.ndarray] = []
        for kind, ring in list(self.rings.angle.items()):
            t, v = ring.snapshot(since)
            drawn += len(t)
            x, v = peak_decimate((t - now_ns) * 1e-9, np.degrees(v), -w, 0.0, px)
            angle_cols.append(v)
            for j in range(ring.width):
                self._angle_curve(kind, j).setData(x, v[:, j])
        self._fit_y(self.acc_plot, "acc", acc_cols)
        self._fit_y(self.gyr_plot, "gyr", gyr_cols)
        self._fit_y(self.angle_plot, "angle", angle_cols)
        drawn += self._refresh_torques(since, now_ns, px)
        self.samples_drawn = drawn
