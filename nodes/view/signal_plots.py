"""Rolling plots: acceleration and angular rate per sensor, joint angles with ground truth.

Reads :class:`SampleRings` filled by the bus thread; call :meth:`SignalPlots.refresh` from
the Qt thread (about 30 Hz). Units at the UI: m/s^2, deg/s, deg; time in s before now.
"""

from __future__ import annotations

import time

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from nodes.view.sample_ring import SampleRings

AXIS_COLORS = ((230, 80, 80), (90, 200, 90), (90, 140, 240))
ANGLE_COLORS = ((240, 170, 60), (80, 200, 220), (220, 110, 220), (170, 220, 90), (240, 120, 120),
                (150, 150, 255))
ALL_SENSORS = "all sensors"


class SignalPlots(QtWidgets.QWidget):
    """Three stacked plots sharing the time axis, plus a sensor selector."""

    def __init__(self, rings: SampleRings, hinge_names: tuple[str, ...],
                 parent: QtWidgets.QWidget | None = None) -> None:
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
        self.samples_drawn = 0

    def _plot(self, row: int, title: str, label: str, unit: str, window_s: float) -> pg.PlotItem:
        p = self.graphics.addPlot(row=row, col=0, title=title)
        p.setLabel("left", label, units=unit)
        p.getAxis("left").enableAutoSIPrefix(False)
        p.showGrid(x=True, y=True, alpha=0.25)
        p.setDownsampling(mode="peak")
        p.setClipToView(True)
        p.setXRange(-window_s, 0.0, padding=0)
        p.enableAutoRange(axis="y")
        p.setMouseEnabled(x=False, y=True)
        p.addLegend(offset=(-5, 5), labelTextSize="8pt", colCount=3)
        return p

    def _imu_curve(self, name: str, k: int, index: int) -> pg.PlotDataItem:
        key = (name, k)
        curve = self.imu_curves.get(key)
        if curve is None:
            axis = "xyz"[k % 3]
            style = pg.QtCore.Qt.PenStyle.SolidLine if index % 2 == 0 else pg.QtCore.Qt.PenStyle.DashLine
            pen = pg.mkPen(AXIS_COLORS[k % 3], width=1, style=style)
            plot = self.acc_plot if k < 3 else self.gyr_plot
            curve = plot.plot(pen=pen, name=f"{name} {axis}")
            curve.setDownsampling(auto=True, method="peak")
            curve.setClipToView(True)
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

    def refresh(self, now_ns: int | None = None) -> None:
        """Redraw every curve from the rings: x = time before now in s."""
        now_ns = time.monotonic_ns() if now_ns is None else now_ns
        since = now_ns - int(self.rings.window_s * 1e9)
        names = self.rings.names()
        for name in names:
            if self.sensor_box.findText(name) < 0:
                self.sensor_box.addItem(name)
        chosen = self.sensor_box.currentText()
        drawn = 0
        for index, name in enumerate(names):
            show = chosen in (ALL_SENSORS, name)
            t, v = self.rings.imu[name].snapshot(since if show else now_ns + 1)
            x = (t - now_ns) * 1e-9
            drawn += len(t)
            for k in range(6):
                curve = self._imu_curve(name, k, index)
                curve.setVisible(show)
                y = v[:, k] if k < 3 else np.degrees(v[:, k])
                curve.setData(x, y)
        for kind, ring in list(self.rings.angle.items()):
            t, v = ring.snapshot(since)
            x = (t - now_ns) * 1e-9
            drawn += len(t)
            for j in range(ring.width):
                self._angle_curve(kind, j).setData(x, np.degrees(v[:, j]))
        self.samples_drawn = drawn
