"""The 3D view as a plain Qt widget: the chain scene rendered off screen and painted as an image.

A ``QOpenGLWidget`` (vispy's Qt canvas) inside the main window makes Qt compose the whole
window through OpenGL on every frame: with Mesa's software renderer that composition, not
the scene, is most of a frame's cost, and every plot refresh pays it again. Here the vispy
canvas is a never-shown widget (``WA_DontShowOnScreen``): each frame is drawn into its
framebuffer, read back, and painted by this raster widget, so the window stays a raster
window and a plot refresh repaints the plots only. Mouse and wheel events are handed on to
the canvas, so the camera still orbits, pans and zooms as in vispy.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from nodes.view.chain_scene import ChainScene


class _SwallowPaint(QtCore.QObject):
    """Event filter: the hidden canvas never paints itself (no second draw, no buffer swap)."""

    SWALLOWED = (QtCore.QEvent.Type.Paint, QtCore.QEvent.Type.UpdateRequest)

    def eventFilter(self, _obj: QtCore.QObject, event: QtCore.QEvent) -> bool:
        """True (swallow) for paint requests, False for everything else."""
        return event.type() in self.SWALLOWED


class SceneImage(QtWidgets.QWidget):
    """Shows ``scene`` (a :class:`ChainScene`): call :meth:`redraw` after a pose changed.

    Attributes:
        scene: the ChainScene, rendered off screen at this widget's size.
        frames_drawn: frames rendered and painted so far.
    """

    def __init__(self, scene: ChainScene, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.scene = scene
        self.frames_drawn = 0
        self._image: QtGui.QImage | None = None
        self._pixels: np.ndarray | None = None  # keeps the QImage's buffer alive
        native = scene.canvas.native
        native.setAttribute(QtCore.Qt.WidgetAttribute.WA_DontShowOnScreen, True)
        native.show()  # creates the GL context; never mapped on screen
        self._no_paint = _SwallowPaint(native)
        native.installEventFilter(self._no_paint)  # frames come from render() only
        self.setMinimumSize(200, 150)
        self.setMouseTracking(True)
        self.setFocusPolicy(QtCore.Qt.FocusPolicy.ClickFocus)
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_OpaquePaintEvent, True)
        self._dirty = True

    def sizeHint(self) -> QtCore.QSize:
        """The scene's size as first built."""
        w, h = self.scene.canvas.size
        return QtCore.QSize(int(w), int(h))

    def mark_dirty(self) -> None:
        """Draw a new frame at the next :meth:`redraw` even if no pose arrived."""
        self._dirty = True

    def redraw(self) -> bool:
        """Render the scene if anything changed and repaint; True when a frame was drawn."""
        if not self._dirty or not self.isVisible():
            return False
        self._dirty = False
        rgba = np.ascontiguousarray(self.scene.render())
        h, w = rgba.shape[:2]
        self._pixels = rgba
        self._image = QtGui.QImage(rgba.data, w, h, 4 * w, QtGui.QImage.Format.Format_RGBA8888)
        self.frames_drawn += 1
        self.update()
        return True

    def paintEvent(self, _event: QtGui.QPaintEvent) -> None:
        """Paint the newest rendered frame (background colour before the first one)."""
        painter = QtGui.QPainter(self)
        if self._image is None:
            painter.fillRect(self.rect(), QtGui.QColor(30, 33, 39))
        else:
            painter.drawImage(self.rect(), self._image)
        painter.end()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        """Render at the widget's size (the canvas follows)."""
        size = event.size()
        self.scene.canvas.native.resize(size.width(), size.height())
        self._dirty = True
        super().resizeEvent(event)

    def _forward(self, event: QtCore.QEvent) -> None:
        QtWidgets.QApplication.sendEvent(self.scene.canvas.native, event)
        self._dirty = True

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        """Hand on to the vispy canvas (camera)."""
        self._forward(event)

    def mouseReleaseEvent(self, event: QtGui.QMouseEvent) -> None:
        """Hand on to the vispy canvas (camera)."""
        self._forward(event)

    def mouseMoveEvent(self, event: QtGui.QMouseEvent) -> None:
        """Hand on to the vispy canvas (camera)."""
        if event.buttons():
            self._forward(event)

    def wheelEvent(self, event: QtGui.QWheelEvent) -> None:
        """Hand on to the vispy canvas (zoom)."""
        self._forward(event)
