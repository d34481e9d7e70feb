"""SPICE export: a tile as a standard SPICE deck of exactly the circuit the engine solves.

One deck holds one tile of a batch and one input vector (:func:`to_spice`); :func:`to_spice_decks`
writes one deck per input vector (decks rather than a ``.control`` loop, so that every deck stays
plain, portable SPICE that any simulator reads). A deck contains:

- ideal sources ``Vsrc_i src_i 0 DC v_in[i]`` for the word-line drivers and
  ``Vsense_j sense_j 0 DC v_sense[j]`` for the sense amplifiers. SPICE reports the current through a
  voltage source flowing into its ``+`` node, so ``I(Vsense_j)`` is the current into the sense node,
  circuitsim's ``i_out[j]``, and ``-I(Vsrc_i)`` is circuitsim's ``i_source[i]``;
- resistors from the circuit's resistor group (already series-combined: driver plus first word-line
  segment is one branch). A zero resistance merges its two nodes: the deck names each class of
  merged nodes once (see :func:`spice_nodes`) and never writes a 0-ohm resistor (SPICE would clamp
  it to 1e-12 ohm, and an ideal-source loop would be singular);
- memristors through their model's ``spice()`` (``None`` is a linear resistor ``1/g``; ``g == 0``
  writes no element);
- access transistors through :meth:`circuitsim.devices.Level1.spice`, each gate tied to a node
  ``gate_k`` driven by its own ideal source ``Vgate_k`` per distinct gate voltage (gates draw no DC
  current, so this adds no unknown to the DC problem);
- ``.options`` with tight tolerances (:data:`OPTIONS`), and ``.op``.

Node names are ``wl_i_j``, ``bl_i_j``, ``int_i_j``, ``src_i``, ``sense_j`` and ``gate_k``.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import scipy.sparse as sp
from scipy.sparse import csgraph

from .crossbar import Tile

__all__ = ["OPTIONS", "spice_nodes", "to_spice", "to_spice_decks"]

#: Default ``.options``. ``reltol``, ``abstol`` (A) and ``vntol`` (V) tighten ngspice's Newton
#: convergence test (defaults 1e-3, 1e-12, 1e-6) far below the 1e-9 / 1e-6 relative agreement
#: the cross-checks ask for. ``gmin=1e-30``: SPICE puts GMIN (default 1e-12 S) across the bulk
#: junctions of every MOSFET, a leakage the engine's level-1 model does not have; 1e-30 S leaves
#: it far below ``abstol``. ``itl1=500`` gives Newton room on strongly nonlinear sinh cells before
#: ngspice falls back to gmin and source stepping. All are standard SPICE options.
OPTIONS = "reltol=1e-9 abstol=1e-15 vntol=1e-12 gmin=1e-30 itl1=500"


def _fmt(x: float) -> str:
    """The shortest text that parses back to the same float64 (``0.3``, ``1e-06``, ``1000``)."""
    text = repr(float(x))
    return text.removesuffix(".0")


def _sanitize(names: np.ndarray) -> list[str]:
    """SPICE-safe names: ``wl[0,1]`` becomes ``wl_0_1``, ``source[2]`` becomes ``src_2``."""
    out = []
    for name in names:
        s = re.sub(r"[^A-Za-z0-9_]+", "_", str(name)).strip("_").lower()
        out.append("src" + s[6:] if s.startswith("source_") else s)
    return out


def _classes(circuit, tile_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Classes of nodes joined by zero resistances in one tile: ``(labels, fixed_class)``.

    The same union as the engine's: connected components of the graph of zero-resistance branches.
    ``fixed_class[c]`` is the fixed node in class ``c``, or -1.
    """
    res = circuit.groups[0]
    zero = res.value[tile_index] == 0
    n = circuit.n_nodes
    adj = sp.coo_matrix((np.ones(int(zero.sum())), (res.a[zero], res.b[zero])), shape=(n, n))
    _, labels = csgraph.connected_components(adj, directed=False)
    fixed = np.arange(n - circuit.n_fixed, n)
    fixed_class = np.full(labels.max() + 1, -1)
    for node in fixed:
        other = fixed_class[labels[node]]
        if other >= 0:
            raise ValueError(
                f"a zero-resistance path joins the fixed-voltage nodes {circuit.node_name(other)} "
                f"and {circuit.node_name(node)} (a loop of ideal sources): give a nonzero driver, "
                "wire or sense resistance"
            )
        fixed_class[labels[node]] = node
    return labels, fixed_class


def spice_nodes(tile: Tile, tile_index: int = 0) -> np.ndarray:
    """Deck node name of every circuit node of one tile, ``(n_nodes,)`` of str.

    Nodes merged by zero resistances share one name: that of the fixed node in their class if
    there is one (``src_i`` or ``sense_j``), otherwise that of the class's smallest node id.

    >>> from circuitsim.netlist import crossbar
    >>> spice_nodes(crossbar([[1e-3, 1e-3]], r_wl=[[1.0, 0.0]], r_bl=1.0, r_sense=0.0)).tolist()
    ['wl_0_0', 'wl_0_0', 'bl_0_0', 'bl_0_1', 'src_0', 'sense_0', 'sense_1']
    """
    circuit = tile.circuit
    labels, fixed_class = _classes(circuit, tile_index)
    first = np.full(labels.max() + 1, circuit.n_nodes)
    np.minimum.at(first, labels, np.arange(circuit.n_nodes))
    rep = np.where(fixed_class >= 0, fixed_class, first)
    names = np.array(_sanitize(circuit.node_names), dtype=object)
    return names[rep[labels]].astype(str)


def _element_names(group) -> list[str]:
    """Element name suffixes: ``wl_0_1``, ``bl_2_0``, ``source_right_1``, ``cell_0_1``, ``acc_0_1``."""
    names = _sanitize(group.names)
    if group.kind == "resistor":
        return [s.removeprefix("r_") for s in names]
    prefix = {"device": "cell", "transistor": "acc"}.get(group.kind, group.kind)
    return [prefix + s[s.find("_") :] if "_" in s else f"{prefix}_{s}" for s in names]


def _params_of(model, tile_index: int):
    """The model with per-cell parameters of one tile, ``(1, E)``, where it has any."""
    take = getattr(model, "take", None)
    if take is None or not getattr(model, "_cell_params", ()):
        return model
    return take(np.array([tile_index]))


def _subset(model, idx: np.ndarray):
    """The model restricted to branches ``idx``: per-cell parameters ``(1, E)`` sliced."""
    new = {}
    for name in getattr(model, "_cell_params", ()):
        value = np.asarray(getattr(model, name))
        if value.ndim == 2:
            new[name] = value[:, idx]
    return dataclasses.replace(model, **new) if new else model


def _group_lines(group, node: np.ndarray, tile_index: int, gates: list[float]) -> list[str]:
    """Element lines of one branch group; branches inside one merged class are left out.

    Transistor gates get one node ``gate_k`` per distinct gate voltage; the voltages are appended
    to ``gates``.
    """
    values = group.value[tile_index]
    keep = node[group.a] != node[group.b]
    if group.kind == "resistor":
        keep &= values != 0
    idx = np.flatnonzero(keep)
    names = np.array(_element_names(group), dtype=object)[idx].tolist()
    a, b = node[group.a[idx]].tolist(), node[group.b[idx]].tolist()
    if group.kind == "resistor" or (group.kind == "device" and group.model is None):
        # A linear memristor (model None) is the resistor 1/g; an open cell (g = 0) has no line.
        on = values[idx] != 0
        with np.errstate(divide="ignore"):
            r = values[idx] if group.kind == "resistor" else 1.0 / values[idx]
        return [f"R{s} {p} {q} {_fmt(x)}" for s, p, q, x, k in zip(names, a, b, r, on) if k]
    model = _subset(_params_of(group.model, tile_index), idx)
    if group.kind == "device":
        return model.spice(names, a, b, values[idx])
    if group.kind != "transistor":
        raise ValueError(f"cannot write branch group of kind {group.kind!r} as SPICE")
    levels, which = np.unique(values[idx], return_inverse=True)
    first = len(gates)
    gates.extend(float(v) for v in levels)
    gate = [f"gate_{first + k}" for k in which.reshape(-1)]
    return model.spice(names, a, gate, b, "nmos")


def _describe(tile: Tile, tile_index: int) -> str:
    cell = "1T1R" if tile.access is not None else "passive 0T1R"
    device = "linear" if tile.device is None else type(tile.device).__name__
    return (
        f"{tile.m}x{tile.n} crossbar tile {tile_index} of {tile.batch}, {cell}, {device} "
        f"memristors, drive={tile.drive}"
    )


def to_spice(
    tile: Tile,
    v_in,
    *,
    tile_index: int = 0,
    title: str | None = None,
    options: str | None = OPTIONS,
) -> str:
    """Write one tile and one input vector as a SPICE deck (DC operating point).

    Parameters
    ----------
    tile : Tile
        From :func:`circuitsim.crossbar`; a batch of tiles is fine.
    v_in : array_like, shape (m,)
        Word-line driver voltages (V).
    tile_index : int
        Which tile of the batch to write.
    title : str, optional
        The deck's first line (SPICE reads the first line as the title).
    options : str or None
        The ``.options`` line's contents (default :data:`OPTIONS`); ``None`` writes none.

    Returns
    -------
    str
        The deck, ending in ``.end``. ``I(Vsense_j)`` is ``i_out[j]``; ``-I(Vsrc_i)`` is
        ``i_source[i]``.

    Raises
    ------
    ValueError
        For inputs of the wrong shape or non-finite values, a tile index out of range, or a
        zero-resistance path between two fixed-voltage nodes.

    Examples
    --------
    >>> from circuitsim.netlist import crossbar
    >>> print(to_spice(crossbar([[1e-3]], r_wl=1.0, r_bl=0.0), [0.5], title="one cell",
    ...                options=None))
    one cell
    * circuitsim: 1x1 crossbar tile 0 of 1, passive 0T1R, linear memristors, drive=left
    * i_out[j] = I(Vsense_j) (current into sense_j); i_source[i] = -I(Vsrc_i)
    Vsrc_0 src_0 0 DC 0.5
    Vsense_0 sense_0 0 DC 0
    Rwl_0_0 src_0 wl_0_0 1
    Rcell_0_0 wl_0_0 sense_0 1000
    .op
    .end
    <BLANKLINE>
    """
    v = np.asarray(v_in, dtype=np.float64)
    if v.shape != (tile.m,):
        raise ValueError(
            f"v_in has shape {v.shape}; to_spice takes one vector of shape ({tile.m},)"
        )
    if not np.all(np.isfinite(v)):
        raise ValueError(f"v_in[{int(np.flatnonzero(~np.isfinite(v))[0])}] is not finite")
    if not 0 <= tile_index < tile.batch:
        raise ValueError(f"tile_index {tile_index} is out of range for a batch of {tile.batch}")
    circuit = tile.circuit
    node = np.array(spice_nodes(tile, tile_index), dtype=object)
    names = node[tile.n_cell_nodes :]
    fixed = np.concatenate([v, tile.v_sense[tile_index]])
    lines = [
        title or f"circuitsim {tile.m}x{tile.n} tile",
        f"* circuitsim: {_describe(tile, tile_index)}",
        "* i_out[j] = I(Vsense_j) (current into sense_j); i_source[i] = -I(Vsrc_i)",
    ]
    if options:
        lines.append(f".options {options}")
    for name, value in zip(names, fixed):
        lines.append(f"V{name} {name} 0 DC {_fmt(value)}")
    gates: list[float] = []
    body = []
    for group in circuit.groups:
        body.extend(_group_lines(group, node, tile_index, gates))
    lines.extend(f"Vgate_{k} gate_{k} 0 DC {_fmt(g)}" for k, g in enumerate(gates))
    lines.extend(body)
    lines.extend([".op", ".end", ""])
    return "\n".join(lines)


def to_spice_decks(
    tile: Tile,
    v_in,
    *,
    tile_index: int = 0,
    title: str | None = None,
    options: str | None = OPTIONS,
) -> list[str]:
    """One deck per input vector: :func:`to_spice` for each row of ``v_in`` ``(K, m)``.

    Separate decks rather than one deck with a ``.control`` loop keep every deck portable SPICE.
    """
    v = np.asarray(v_in, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"v_in has shape {v.shape}; to_spice_decks takes (K, m)")
    return [to_spice(tile, row, tile_index=tile_index, title=title, options=options) for row in v]
