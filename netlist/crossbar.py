"""The crossbar tile: parameters, validation, and its circuit (DESIGN.md section 3).

A tile has ``m`` word lines (rows, inputs) and ``n`` bit lines (columns, outputs)::

    v_in[0] --r_source--+--r_wl--+--r_wl--+    (WL 0)
                        |  g00   |  g01
                        +---.----+---.----
                            |        |         cell (i, j): memristor from WL node (i, j)
                          r_bl     r_bl        to BL node (i, j); BL segment below it
    v_in[1] --r_source--+--r_wl--+--r_wl--+    (WL 1)
                            |        |
                          r_bl     r_bl
                            |        |
                         r_sense  r_sense
                            |        |
                         sense 0  sense 1      (held at v_sense; i_out[j] flows into it)

Every cell owns the WL segment to its left and the BL segment below it. ``r_source`` sits in series
before the first WL segment (and, with ``drive="both"``, also after the last one); ``r_sense`` in
series after the last BL segment. A series pair is one branch of resistance ``r_source + r_wl[i, 0]``
(resp. ``r_bl[m-1, j] + r_sense[j]``): the same circuit, one node fewer.

Node ids: WL node (i, j) is ``i*n + j``; BL node (i, j) is ``m*n + i*n + j``; for 1T1R tiles the
internal node (i, j) is ``2*m*n + i*n + j``; then the ``m`` drivers and the ``n`` sense nodes, which
are the fixed-voltage nodes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from .checks import (
    as_float_array,
    broadcast_cell_param,
    broadcast_param,
    check_conductance,
    check_resistance,
    check_voltage,
)
from .circuit import BranchGroup, Circuit

__all__ = ["Tile", "crossbar"]

_DRIVES = ("left", "both")


@dataclass(frozen=True, eq=False)
class Tile:
    """A batch of ``B`` crossbar tiles of one shape and topology, as validated plain data.

    Build it with :func:`crossbar`. Arrays carry a leading batch axis even for a single tile;
    ``batched`` records whether the user gave one, so results can drop it again.

    Attributes
    ----------
    g : ndarray, shape (B, m, n)
        Cell state conductances (S).
    r_wl, r_bl : ndarray, shape (B, m, n)
        Word-line and bit-line segment resistances (ohm).
    r_source : ndarray, shape (B, m)
        Driver resistance per word line (ohm).
    r_sense : ndarray, shape (B, n)
        Sense resistance per bit line (ohm).
    v_sense : ndarray, shape (B, n)
        Sense (virtual ground) voltage per bit line (V).
    drive : {"left", "both"}
    device : object
        Memristor model; ``None`` means linear ``I = g V``.
    access : object or None
        Access transistor model (1T1R) or ``None`` (passive, 0T1R).
    v_gate : ndarray, shape (B, m, n), or None
        Gate voltages of the access transistors (V).
    batched : bool
    """

    g: np.ndarray
    r_wl: np.ndarray
    r_bl: np.ndarray
    r_source: np.ndarray
    r_sense: np.ndarray
    v_sense: np.ndarray
    drive: str = "left"
    device: Any = None
    access: Any = None
    v_gate: np.ndarray | None = None
    batched: bool = False

    @property
    def batch(self) -> int:
        return self.g.shape[0]

    @property
    def m(self) -> int:
        return self.g.shape[1]

    @property
    def n(self) -> int:
        return self.g.shape[2]

    @property
    def is_linear(self) -> bool:
        """True when every branch is linear (no access transistor, linear memristor)."""
        return self.access is None and (self.device is None or getattr(self.device, "linear", False))

    @property
    def n_cell_nodes(self) -> int:
        """Number of non-fixed node ids: ``2mn`` (passive) or ``3mn`` (1T1R)."""
        return (2 if self.access is None else 3) * self.m * self.n

    def wl_node(self, i, j):
        return np.asarray(i) * self.n + np.asarray(j)

    def bl_node(self, i, j):
        return self.m * self.n + np.asarray(i) * self.n + np.asarray(j)

    def int_node(self, i, j):
        return 2 * self.m * self.n + np.asarray(i) * self.n + np.asarray(j)

    def source_node(self, i):
        return self.n_cell_nodes + np.asarray(i)

    def sense_node(self, j):
        return self.n_cell_nodes + self.m + np.asarray(j)

    @cached_property
    def circuit(self) -> Circuit:
        """The tile as nodes and branch groups (see :mod:`circuitsim.netlist.circuit`)."""
        m, n, batch = self.m, self.n, self.batch
        i, j = np.divmod(np.arange(m * n), n)

        # Word-line segments: cell (i, j) owns the segment to its left; the first one is in series
        # with the driver.
        wl_a = np.where(j == 0, self.source_node(i), self.wl_node(i, j - 1))
        r_wl = self.r_wl.reshape(batch, m * n).copy()
        r_wl[:, j == 0] += self.r_source
        a, b, r = [wl_a], [self.wl_node(i, j)], [r_wl]
        # Bit-line segments: cell (i, j) owns the one below it; the last one is in series with the
        # sense resistance.
        bl_b = np.where(i == m - 1, self.sense_node(j), self.bl_node(i + 1, j))
        r_bl = self.r_bl.reshape(batch, m * n).copy()
        r_bl[:, i == m - 1] += self.r_sense
        a.append(self.bl_node(i, j))
        b.append(bl_b)
        r.append(r_bl)
        if self.drive == "both":
            rows = np.arange(m)
            a.append(self.wl_node(rows, n - 1))
            b.append(self.source_node(rows))
            r.append(self.r_source)
        resistors = BranchGroup(
            "resistor",
            np.concatenate(a),
            np.concatenate(b),
            np.concatenate(r, axis=1),
            namer=self._resistor_names,
        )
        cell_b = self.bl_node(i, j) if self.access is None else self.int_node(i, j)
        groups = [
            resistors,
            BranchGroup(
                "device",
                self.wl_node(i, j),
                cell_b,
                self.g.reshape(batch, m * n),
                model=self.device,
                namer=lambda k: self._cell_names("g", k),
            ),
        ]
        if self.access is not None:
            groups.append(
                BranchGroup(
                    "transistor",
                    self.int_node(i, j),
                    self.bl_node(i, j),
                    self.v_gate.reshape(batch, m * n),
                    model=self.access,
                    namer=lambda k: self._cell_names("m", k),
                )
            )
        return Circuit(
            n_nodes=self.n_cell_nodes + m + n,
            n_fixed=m + n,
            groups=tuple(groups),
            namer=self._node_names,
            coords=self._coords(),
        )

    def _cell_names(self, prefix: str, cell: np.ndarray) -> np.ndarray:
        i, j = np.divmod(np.asarray(cell), self.n)
        return np.char.add(np.char.add(np.char.add(prefix + "[", i.astype(str)), ","),
                           np.char.add(j.astype(str), "]"))

    def _resistor_names(self, k: np.ndarray) -> np.ndarray:
        """Names of resistor branches: r_wl[i,j] (with r_source for j = 0), r_bl[i,j] (with r_sense
        for i = m-1), r_source_right[i]."""
        k = np.asarray(k)
        mn = self.m * self.n
        out = self._cell_names("r_wl", k % mn).astype(object)
        bl = (k >= mn) & (k < 2 * mn)
        out[bl] = self._cell_names("r_bl", k[bl] - mn)
        right = k >= 2 * mn
        out[right] = np.char.add(np.char.add("r_source_right[", (k[right] - 2 * mn).astype(str)), "]")
        return out.astype(str)

    def _node_names(self, node: np.ndarray) -> np.ndarray:
        """Names of nodes: wl[i,j], bl[i,j], int[i,j], source[i], sense[j]."""
        node = np.asarray(node)
        mn, cells = self.m * self.n, self.n_cell_nodes
        out = np.empty(node.shape, dtype=object)
        for k, kind in enumerate(("wl", "bl", "int")):
            sel = (node >= k * mn) & (node < min((k + 1) * mn, cells))
            out[sel] = self._cell_names(kind, node[sel] - k * mn)
        for kind, lo, hi in (("source", cells, cells + self.m),
                             ("sense", cells + self.m, cells + self.m + self.n)):
            sel = (node >= lo) & (node < hi)
            out[sel] = np.char.add(np.char.add(kind + "[", (node[sel] - lo).astype(str)), "]")
        return out.astype(str)

    def _coords(self) -> np.ndarray:
        """(row, column) of every node; drivers sit left of column 0, sense nodes below row m-1."""
        m, n = self.m, self.n
        i, j = np.divmod(np.arange(m * n), n)
        kinds = 2 if self.access is None else 3
        cells = np.tile(np.stack([i, j], axis=1), (kinds, 1))
        drivers = np.stack([np.arange(m), np.full(m, -1)], axis=1)
        sense = np.stack([np.full(n, m), np.arange(n)], axis=1)
        return np.concatenate([cells, drivers, sense])

    def select(self, idx) -> Tile:
        """The sub-batch of tiles ``idx`` (an index array), as a batched tile."""
        idx = np.asarray(idx)
        models = {}
        for name in ("device", "access"):
            model = getattr(self, name)
            models[name] = model.take(idx) if hasattr(model, "take") else model
        return Tile(
            g=self.g[idx], r_wl=self.r_wl[idx], r_bl=self.r_bl[idx],
            r_source=self.r_source[idx], r_sense=self.r_sense[idx], v_sense=self.v_sense[idx],
            drive=self.drive, device=models["device"], access=models["access"],
            v_gate=None if self.v_gate is None else self.v_gate[idx], batched=True,
        )

    def fixed_voltages(self, v_in: np.ndarray) -> np.ndarray:
        """Voltages of the fixed nodes, shape ``(B, K, m + n)``, for inputs ``v_in`` ``(B, K, m)``."""
        v_sense = np.broadcast_to(self.v_sense[:, None, :], v_in.shape[:2] + (self.n,))
        return np.concatenate([v_in, v_sense], axis=2)

    def check_inputs(self, v_in) -> np.ndarray:
        """Validate input voltages; returns them as float64 of shape ``(B, K, m)``.

        Accepted shapes: ``(m,)``, ``(K, m)``, or ``(B, K, m)`` for a batched tile.
        """
        v = as_float_array(v_in, "v_in")
        m, batch = self.m, self.batch
        if v.ndim == 0 or v.shape[-1] != m or v.ndim > 3 or (v.ndim == 3 and not self.batched):
            want = "(m,), (K, m)" + (" or (B, K, m)" if self.batched else "")
            raise ValueError(
                f"v_in has shape {v.shape}; expected {want} with m = {m} word lines"
                + (f" and B = {batch} tiles" if self.batched else "")
            )
        if v.ndim == 3 and v.shape[0] != batch:
            raise ValueError(f"v_in has shape {v.shape} but the tile batch has B = {batch} tiles")
        if v.shape[-2:-1] == (0,):
            raise ValueError(f"v_in has shape {v.shape}: no input vectors (K = 0)")
        check_voltage(v, "v_in")
        if v.ndim == 1:
            v = v[None, :]
        if v.ndim == 2:
            v = np.broadcast_to(v, (batch,) + v.shape)
        return v


def _compact(arr: np.ndarray) -> np.ndarray:
    """A broadcast parameter stays a read-only view of its few values (a scalar wire resistance
    costs no memory per cell); any other is made contiguous."""
    return arr if 0 in arr.strides else np.ascontiguousarray(arr)


def crossbar(
    g,
    r_wl=0.0,
    r_bl=0.0,
    r_source=0.0,
    r_sense=0.0,
    *,
    v_sense=0.0,
    drive: str = "left",
    device=None,
    access=None,
    v_gate=None,
) -> Tile:
    """Build a crossbar tile (or a batch of tiles sharing one shape).

    Parameters
    ----------
    g : array_like, shape (m, n) or (B, m, n)
        Cell conductances (S), 0 .. 1e12. A leading axis makes a batch of ``B`` tiles.
    r_wl, r_bl : float or array_like, shape (m, n), (m, 1), (1, n) or batched (B, ...)
        Word-line / bit-line segment resistance per cell (ohm): 0 (merges the nodes exactly) or
        1e-12 .. 1e15 ohm. ``(m, 1)`` gives one value per word line, ``(1, n)`` one per bit
        line; a 1-D array is refused as ambiguous.
    r_source : float or array_like, shape (m,) or (B, m)
        Driver resistance of each word line (ohm), >= 0 (per line by nature, so 1-D is fine).
    r_sense : float or array_like, shape (n,) or (B, n)
        Sense resistance of each bit line (ohm), >= 0.
    v_sense : float or array_like, shape (n,) or (B, n)
        Voltage held by the sense amplifiers (V).
    drive : {"left", "both"}
        Drive each word line at its left end only, or at both ends (same source, ``r_source`` each).
    device : device model, optional
        Memristor I-V model (:mod:`circuitsim.devices`); default linear ``I = g V``.
    access : transistor model, optional
        Access transistor (1T1R); default none (passive 0T1R).
    v_gate : float or array_like, optional
        Gate voltage(s) of the access transistors: scalar, ``(m, 1)`` per-row or ``(1, n)``
        per-column select, ``(m, n)``, or batched ``(B, ...)``; 1-D is refused as ambiguous.
        Required with ``access``.

    Examples
    --------
    >>> tile = crossbar([[1e-3]], r_source=1000.0)
    >>> tile.m, tile.n, tile.batch
    (1, 1, 1)
    """
    g = as_float_array(g, "g")
    if g.ndim not in (2, 3):
        raise ValueError(f"g has shape {g.shape}; expected (m, n) or (B, m, n)")
    if 0 in g.shape:
        raise ValueError(f"g has shape {g.shape}: a tile needs at least one row and one column")
    check_conductance(g, "g")
    batched = g.ndim == 3
    g3 = g if batched else g[None]
    batch, m, n = g3.shape
    params = {}
    for name, value in (("r_wl", r_wl), ("r_bl", r_bl)):
        raw = as_float_array(value, name)
        check_resistance(raw, name)
        params[name] = broadcast_cell_param(raw, name, m, n, batch)
    for name, value, shape in (("r_source", r_source, (m,)), ("r_sense", r_sense, (n,)),
                               ("v_sense", v_sense, (n,))):
        raw = as_float_array(value, name)
        (check_voltage if name == "v_sense" else check_resistance)(raw, name)
        params[name] = broadcast_param(raw, name, shape, batch)
    if drive not in _DRIVES:
        raise ValueError(f"drive must be one of {_DRIVES}, got {drive!r}")
    for name, model, method in (("device", device, "current"), ("access", access, "drain_current")):
        if isinstance(model, type):
            raise TypeError(
                f"{name} must be a model instance, got the class {model.__name__}: write "
                f"{name}={model.__name__}(...) with its parameters"
            )
        if model is not None and not callable(getattr(model, method, None)):
            raise TypeError(
                f"{name} must be a model from circuitsim.devices with a {method}() method, "
                f"got {type(model).__name__}"
            )
    if access is None and v_gate is not None:
        raise ValueError("v_gate is given but access is None: gates exist only in 1T1R tiles")
    if access is not None:
        if v_gate is None:
            raise ValueError("access is given but v_gate is None: give the gate voltage(s)")
        v_gate = as_float_array(v_gate, "v_gate")
        check_voltage(v_gate, "v_gate")
        v_gate = _compact(broadcast_cell_param(v_gate, "v_gate", m, n, batch))
    expanded = {}
    for name, model in (("device", device), ("access", access)):
        expand = getattr(model, "expand", None)
        expanded[name] = expand(batch, m, n) if expand is not None else model
    return Tile(
        g=_compact(g3),
        **{k: _compact(v) for k, v in params.items()},
        drive=drive,
        device=expanded["device"],
        access=expanded["access"],
        v_gate=v_gate,
        batched=batched,
    )
