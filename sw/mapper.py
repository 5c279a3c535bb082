"""Place a GPT model in PIM DRAM: every matrix, vector and KV cache as an ISA region.

A *region* (``docs/isa.md``, "Regions") stores ``V`` vectors of ``vec_len`` bf16 elements: vector
``v`` lives in bank slot ``v % slots`` at local index ``v // slots``, and the vectors of a slot are
stored chunk-major (chunk ``t`` of every local vector, then chunk ``t + 1``, ...), so one
global-buffer load of an input chunk serves a stream of whole DRAM rows in every bank.

Mapping decisions (:mod:`pimgpt.sw.compiler` describes the loop order that streams them):

* weight matrices ``W[in, out]`` (``c_attn``, ``attn.c_proj``, ``c_fc``, ``mlp.c_proj``) are one
  region each, one vector per output neuron (``vec_len = in``), so every output neuron's dot product
  runs in one bank and all banks work on one GEMV at once;
* ``wte`` (vocabulary vectors of ``d_model``) is both the embedding table and the tied LM head
  (an untied head is the region ``lm_head``, laid out alike); ``wpe`` (learned positions only) has
  one vector per position;
* the K cache of a layer has one vector per token (``vec_len = kv_dim``, i.e. ``d_model`` for
  multi-head attention: all K/V heads of a token are concatenated in one vector, hence in one row
  stream); with grouped-query attention one vector per token and *pass* of K/V heads whose query
  heads fit one global buffer (:func:`k_layout`), so that a pass streams only its own rows;
* ``mlp.c_fc`` of a SwiGLU MLP stores the gate and up projections interleaved by chunk of the
  MLP projection's input (:func:`fc_order`);
* the V cache is stored transposed, in blocks of ``T`` tokens (:func:`v_block_tokens`): vector
  ``blk * D + v`` (``D`` = :func:`v_dims`, ``kv_dim`` rounded up to ``slots``; ``v`` =
  :func:`v_vector` of ``m``, below) holds the values of K/V dimension ``m`` for tokens ``blk*T
  .. blk*T + T - 1``, so the softmax probabilities are the broadcast operand of ``p . V``,
  dimension ``m`` stays in the same bank slot in every block, and the
  blocks of all the dimensions of a bank follow one another: a short context fills whole rows
  (one block of every local dimension side by side) instead of touching one row per dimension.
  Multi-head attention with heads of whole units (``banks`` dimensions) is *channel-major*
  (:func:`v_channel_major`, :func:`v_vector`): unit ``u`` of the K/V dimensions goes to channel
  ``u // U`` at local index ``u % U``, so a channel's banks hold few heads and its global buffer
  holds long blocks of their probabilities (fewer loads, of fewer heads, for ``p . V``); else, when
  the K vectors span several global-buffer chunks the dimensions go in *parts*, one per K chunk
  (:func:`v_parts`, :func:`v_local`: vector ``v_local(blk, m // slots) * slots + m % slots``), so
  a head group of whole chunks has rows of its own;
* small vectors (norm gains/shifts, biases) are packed into three regions by length
  (``params_d``, ``bias_qkv``, ``bias_fc``), each cut into pieces, one per channel
  (:func:`piece_index`), so a reload crosses every channel's pins at once, not one channel's;
  :meth:`MemoryMap.pieces` finds them by their checkpoint name;
* every region starts on a row boundary (the same row in every bank); regions are placed one after
  another from row 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import yaml

from pimgpt.core.config import HwConfig
from pimgpt.core.errors import PimgptError
from pimgpt.core.numerics import f32_to_bf16
from pimgpt.sw import models
from pimgpt.sw.models import ModelConfig, weight_shapes

COL = 16  # bf16 elements per DRAM column = one MAC step (column_bytes is validated to be 32)


class MappingError(PimgptError):
    """The model does not fit the hardware, or a mapping request is invalid."""


def round_up(n: int, m: int) -> int:
    """``n`` rounded up to a multiple of ``m``."""
    return -(-n // m) * m


@dataclass(frozen=True)
class Region:
    """``n_vectors`` vectors of ``vec_len`` bf16 elements laid out as in ``docs/isa.md``.

    Parameters
    ----------
    name : str
        Region name (checkpoint name of the matrix, or ``h.{i}.k_cache`` ...).
    row : int
        First DRAM row (``region_row``), the same in every bank.
    n_vectors, vec_len : int
        Number and length of the vectors; ``vec_len`` is a multiple of 16.
    slots, row_elems, gb_elems : int
        Geometry of the hardware: banks in the system, elements per row, elements per GB.
    """

    name: str
    row: int
    n_vectors: int
    vec_len: int
    slots: int
    row_elems: int
    gb_elems: int

    @property
    def n_local(self) -> int:
        """Vectors per bank slot (``ceil(V / slots)``)."""
        return -(-self.n_vectors // self.slots)

    @property
    def n_elems(self) -> int:
        """Elements used in each bank."""
        return self.n_local * self.vec_len

    @property
    def n_rows(self) -> int:
        """Rows occupied in every bank."""
        return -(-self.n_elems // self.row_elems)

    @property
    def bytes(self) -> int:
        """DRAM bytes the region occupies over all banks (whole rows)."""
        return self.n_rows * self.row_elems * 2 * self.slots

    @property
    def payload_bytes(self) -> int:
        """Bytes of the vectors themselves."""
        return self.n_vectors * self.vec_len * 2

    def isa(self) -> dict:
        """The region fields of ``RD_VEC`` / ``WR_VEC`` / ``WR_ELEM``."""
        return {"region_row": self.row, "n_local": self.n_local, "vec_len": self.vec_len}

    def chunks(self) -> list[tuple[int, int, int]]:
        """``(t, start, length)`` of every chunk of a vector (chunks of ``gb_elems``)."""
        g = self.gb_elems
        return [(t, s, min(g, self.vec_len - s)) for t, s in enumerate(range(0, self.vec_len, g))]

    def flat(self, local: int, elem: int) -> int:
        """Element offset from row 0 of a bank of element ``elem`` of local vector ``local``."""
        g = self.gb_elems
        t = elem // g
        length = min(g, self.vec_len - t * g)
        return self.row * self.row_elems + t * self.n_local * g + local * length + elem - t * g

    def segments(self, local: int, lo: int, hi: int) -> list[tuple[int, int, int, int]]:
        """MAC pieces over elements ``[lo, hi)`` of local vector ``local``, within one chunk.

        Returns
        -------
        list of (row, col, ncols, gb_col)
            One piece per DRAM row touched; ``gb_col`` is the GB column of element ``lo`` when the
            GB holds the chunk from its first element.
        """
        g = self.gb_elems
        t = lo // g
        if lo % COL or hi % COL or not 0 <= lo < hi <= min((t + 1) * g, self.vec_len):
            raise MappingError(f"{self.name}: bad MAC range [{lo}, {hi}) (one chunk, 16-aligned)")
        start = self.flat(local, lo)
        end = start + (hi - lo)
        gb_col = (lo - t * g) // COL
        out = []
        re = self.row_elems
        while start < end:
            row, elem = divmod(start, re)
            n = min(end - start, re - elem)
            out.append((row, elem // COL, n // COL, gb_col))
            gb_col += n // COL
            start += n
        return out

    def to_dict(self) -> dict:
        return {
            "region_row": self.row,
            "n_rows": self.n_rows,
            "n_local": self.n_local,
            "vec_len": self.vec_len,
            "n_vectors": self.n_vectors,
            "bytes": self.bytes,
        }


def element_address(
    region_row, n_local, vec_len, vec, elem, *, channels, banks, row_elems, gb_elems
):
    """DRAM address of elements of region vectors, vectorised (``docs/isa.md``, "Regions").

    Parameters
    ----------
    region_row, n_local, vec_len : int
        Region fields as in the instruction.
    vec, elem : array_like of int
        Vector indices and element indices (broadcast together).
    channels, banks, row_elems, gb_elems : int
        Hardware geometry.

    Returns
    -------
    tuple of numpy.ndarray
        ``(channel, bank, row, elem_in_row)`` int64 arrays.
    """
    vec = np.asarray(vec, dtype=np.int64)
    elem = np.asarray(elem, dtype=np.int64)
    slots = channels * banks
    slot = vec % slots
    local = vec // slots
    t = elem // gb_elems
    length = np.minimum(gb_elems, vec_len - t * gb_elems)
    flat = region_row * row_elems + t * n_local * gb_elems + local * length + elem - t * gb_elems
    row, in_row = np.divmod(flat, row_elems)
    ch, bank = np.divmod(slot, banks)
    return ch, bank, row, in_row


# Small vectors, packed by length: (region, per-layer names, global names, length in units of d).
_PARAMS_D = ("ln_1.weight", "ln_1.bias", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
             "mlp.c_proj.bias")


@dataclass
class MemoryMap:
    """Where every tensor of a model lives in DRAM.

    Attributes
    ----------
    cfg : ModelConfig
    hw : HwConfig
    context : int
        KV-cache capacity in tokens.
    regions : dict of str to Region
        In placement order.
    vectors : dict of str to (str, int)
        Packed small vectors: checkpoint name -> (region name, member index); the member's
        pieces are vectors :func:`piece_index` of that region (:meth:`pieces`).
    """

    cfg: ModelConfig
    hw: HwConfig
    context: int
    regions: dict = field(default_factory=dict)
    vectors: dict = field(default_factory=dict)

    @property
    def q_scale(self) -> float:
        """Factor in the image's query columns of every ``attn.c_attn`` weight and bias
        (:func:`pimgpt.sw.models.folded_q_scale`; 1.0: none)."""
        return models.folded_q_scale(self.cfg.d_head)

    @property
    def rows_used(self) -> int:
        return max((r.row + r.n_rows for r in self.regions.values()), default=0)

    def region(self, name: str) -> Region:
        try:
            return self.regions[name]
        except KeyError:
            raise MappingError(f"no region {name!r} in the memory map") from None

    def pieces(self, name: str) -> list[tuple[Region, int, int, int]]:
        """Pieces of the packed small vector ``name`` (e.g. ``h.0.ln_1.weight``) in element
        order, each in its own channel: ``(region, vector index, first element, elements)``."""
        try:
            region_name, member = self.vectors[name]
        except KeyError:
            raise MappingError(f"no small vector {name!r} in the memory map") from None
        region = self.regions[region_name]
        n, step = self.vec_length(name), region.vec_len
        d = self.hw.dram
        return [(region, piece_index(member, k, d.channels, d.banks), lo, min(step, n - lo))
                for k, lo in enumerate(range(0, n, step))]

    def to_dict(self) -> dict:
        d = self.hw.dram
        weight_bytes = sum(r.bytes for n, r in self.regions.items() if not n.endswith("_cache"))
        kv_bytes = sum(r.bytes for n, r in self.regions.items() if n.endswith("_cache"))
        used = self.rows_used * d.row_bytes * d.slots
        return {
            "model": self.cfg.name,
            "hw": self.hw.name,
            "context": self.context,
            "geometry": {
                "channels": d.channels, "banks": d.banks, "slots": d.slots, "rows": d.rows,
                "row_elems": d.row_elems, "gb_elems": d.gb_elems,
            },
            "regions": {name: r.to_dict() for name, r in self.regions.items()},
            "vectors": {
                name: {"region": reg, "n": self.vec_length(name),
                       "pieces": [{"vec": v, "elem": lo, "n": n}
                                  for _r, v, lo, n in self.pieces(name)]}
                for name, (reg, _m) in self.vectors.items()
            },
            "totals": {
                "rows_used": self.rows_used,
                "rows_available": d.rows,
                "bytes_used": used,
                "bytes_available": d.capacity_bytes,
                "weight_bytes": weight_bytes,
                "kv_cache_bytes": kv_bytes,
                "utilisation": round(used / d.capacity_bytes, 6),
            },
        }

    def vec_length(self, name: str) -> int:
        """Length of the packed small vector ``name``."""
        if name.endswith("c_attn.bias"):
            return self.cfg.qkv_dim
        if name.endswith("c_fc.bias"):
            return self.cfg.fc_dim
        return self.cfg.d_model

    def to_yaml(self) -> str:
        """YAML text: regions (region_row, n_rows, n_local, vec_len, n_vectors, bytes), packed
        vectors and totals."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def piece_len(length: int, hw: HwConfig) -> int:
    """Elements per piece of a packed vector: at most ``channels`` pieces of whole columns."""
    return round_up(-(-length // hw.dram.channels), COL)


def piece_index(member: int, piece: int, channels: int, banks: int) -> int:
    """Vector index of piece ``piece`` of member ``member`` of a packed region: channel
    ``piece``, bank ``member % banks`` (a layer's parameters in different banks)."""
    return (member // banks) * channels * banks + piece * banks + member % banks


def v_dims(cfg: ModelConfig, hw: HwConfig) -> int:
    """K/V dimensions (``kv_dim``, ``d_model`` for multi-head attention) rounded up to whole local
    indices (``slots``): the V cache's vectors per token block, so that dimension ``m`` lies in
    bank slot ``m % slots`` in every block."""
    return round_up(cfg.kv_dim, hw.dram.slots)


def k_chunk_heads(cfg: ModelConfig, hw: HwConfig) -> int | None:
    """K/V heads per global-buffer chunk of a K vector when the chunks split the heads: multi-head
    attention whose K vectors span several chunks (``kv_dim > gb_elems``), the chunks holding whole
    heads and whole local indices (``slots`` dimensions); else ``None``. The compiler's
    chunk-aligned head groups and the V cache's parts (:func:`v_parts`) both follow these chunks."""
    d = hw.dram
    G = d.gb_elems
    if cfg.group == 1 and cfg.kv_dim > G and G % cfg.d_head == 0 and G % d.slots == 0:
        return G // cfg.d_head
    return None


def v_channel_major(cfg: ModelConfig, hw: HwConfig) -> bool:
    """Whether the V cache keeps each head's dimensions in one or two channels (*channel-major*,
    :func:`v_vector`): ``dram.v_channel_major`` set, multi-head attention whose heads are whole
    *units* (``banks`` dimensions, one per bank of a channel at one local index). A channel's
    banks then serve few heads, so its global buffer holds longer blocks of few heads'
    probabilities: fewer, longer buffer loads for ``p . V`` (one per head of the channel instead
    of one per local index). A group of consecutive heads then runs its ``p . V`` on its heads'
    channels only; the compiler also offers channel-balanced head groups (docs/dataflow.md)."""
    return hw.dram.v_channel_major and cfg.group == 1 and cfg.d_head % hw.dram.banks == 0


def v_vector(cfg: ModelConfig, hw: HwConfig, m: int) -> int:
    """Vector (within a token block, before :func:`v_local`'s part order: ``local * slots +
    slot``) that holds K/V dimension ``m``.

    Channel-major (:func:`v_channel_major`): unit ``u = m // banks`` (``banks`` consecutive
    dimensions) goes to channel ``u // U`` at local index ``u % U`` (``U`` local indices per
    channel), bank ``m % banks``: the units of a head are consecutive local indices of one
    channel (two where a channel's last ones end). Otherwise dimension ``m`` lies in bank slot
    ``m % slots`` at local index ``m // slots``.
    """
    d = hw.dram
    if not v_channel_major(cfg, hw):
        return m
    ch, local, _slice = v_head_units(cfg, hw, m // cfg.d_head)[m % cfg.d_head // d.banks]
    return local * d.slots + ch * d.banks + m % d.banks


def v_head_units(cfg: ModelConfig, hw: HwConfig, g: int) -> list[tuple[int, int, int]]:
    """Channel-major (:func:`v_channel_major`): ``(channel, local, slice)`` of each unit of K/V
    head ``g`` in order, unit ``u`` in channel ``u // U`` at local index ``u % U`` (``U`` local
    indices per channel); ``slice``: the rank of ``g`` among the heads of that channel (where
    ``p . V`` puts its probabilities in the channel's global buffer)."""
    U = v_dims(cfg, hw) // hw.dram.slots
    hu = cfg.d_head // hw.dram.banks  # units per head
    return [(u // U, u % U, g - u // U * U // hu) for u in range(g * hu, (g + 1) * hu)]


def v_heads_per_channel(cfg: ModelConfig, hw: HwConfig) -> int:
    """Most K/V heads whose dimensions one channel's banks hold (:func:`v_vector`)."""
    if not v_channel_major(cfg, hw):
        return v_dims(cfg, hw) // hw.dram.slots  # every local index may hold another head
    return 1 + max(s for g in range(cfg.n_kv_head) for _c, _i, s in v_head_units(cfg, hw, g))


def v_parts(cfg: ModelConfig, hw: HwConfig) -> list[tuple[int, int]]:
    """The V cache's parts: ranges ``[lo, hi)`` of local indices (``slots`` K/V dimensions each)
    stored one part after another: one part per K chunk when :func:`k_chunk_heads` splits the
    heads, so that a head group of whole chunks (the compiler's chunk-aligned candidate) opens no
    V row another group opens; else one part of every local index."""
    d = hw.dram
    nl = v_dims(cfg, hw) // d.slots
    heads = k_chunk_heads(cfg, hw)
    if heads is None or v_channel_major(cfg, hw):  # channel-major: the channels split the heads
        return [(0, nl)]
    step = heads * cfg.d_head // d.slots
    return [(lo, min(lo + step, nl)) for lo in range(0, nl, step)]


def v_local(parts: list[tuple[int, int]], blocks: int, blk: int, i: int) -> int:
    """Local vector of the V cache holding block ``blk`` of local index ``i`` (``blocks`` blocks;
    ``parts`` from :func:`v_parts`): the parts one after another, each block-major."""
    for lo, hi in parts:
        if lo <= i < hi:
            return blocks * lo + blk * (hi - lo) + i - lo
    raise MappingError(f"local index {i} is in no V-cache part {parts}")


def v_block_tokens(cfg: ModelConfig, hw: HwConfig, context: int) -> int:
    """Tokens per V-cache block: a multiple of 16, at most the padded context, and small enough
    that one block's probabilities of every query head a channel serves fit its global buffer
    (:func:`v_heads_per_channel` K/V heads, each read by ``group`` query heads)."""
    per_channel = v_heads_per_channel(cfg, hw) * cfg.group
    cols = max(1, hw.dram.gb_elems // COL // per_channel)
    if v_channel_major(cfg, hw):  # a block of every local index in one row: short contexts
        nl = v_dims(cfg, hw) // hw.dram.slots  # touch one row (v_load_tokens: longer loads)
        cols = min(cols, max(1, hw.dram.row_elems // COL // nl))
    return min(cols * COL, round_up(context, COL))


def v_load_tokens(cfg: ModelConfig, hw: HwConfig, context: int) -> int:
    """Tokens of probabilities per global-buffer load of ``p . V``: a whole number of V-cache
    blocks (:func:`v_block_tokens`). Channel-major (:func:`v_channel_major`): as many blocks as
    one slice per head of a channel allows (its few heads take long slices), at most the padded
    context; otherwise one block."""
    block = v_block_tokens(cfg, hw, context)
    if not v_channel_major(cfg, hw):
        return block
    cols = max(1, hw.dram.gb_elems // COL // v_heads_per_channel(cfg, hw))
    return block * max(1, min(cols // (block // COL), -(-round_up(context, COL) // block)))


@dataclass(frozen=True)
class KLayout:
    """How a layer's K cache is cut into vectors (``docs/dataflow.md``, "Grouped-query attention").

    Multi-head attention keeps one vector per token (all K heads, ``kv_dim`` elements, in
    global-buffer chunks): ``passes == 1``, ``per_pass == context``. With grouped-query attention
    the K/V heads go in *passes* of ``heads`` K/V heads whose query heads (``heads * group``
    of them) fit one global buffer side by side: vector ``p * per_pass + t`` holds the keys of
    pass ``p`` of token ``t`` (``heads * d_head`` elements, one chunk), ``per_pass`` being the
    context rounded up to whole local indices so that token ``t`` stays in bank slot
    ``t % slots`` in every pass. A pass's keys are then contiguous rows, streamed once for all
    the query heads of its K/V heads.
    """

    heads: int  #: K/V heads per pass
    passes: int
    per_pass: int  #: vectors per pass

    @property
    def n_vectors(self) -> int:
        return self.passes * self.per_pass


def k_layout(cfg: ModelConfig, hw: HwConfig, context: int) -> KLayout:
    """The K-cache layout of ``cfg`` on ``hw`` (:class:`KLayout`): for grouped-query attention,
    the largest divisor of ``n_kv_head`` whose query heads fit the global buffer (at least one
    K/V head per pass)."""
    if cfg.group == 1:
        return KLayout(cfg.n_kv_head, 1, context)
    fit = hw.dram.gb_elems // (cfg.group * cfg.d_head)
    heads = max([h for h in range(1, cfg.n_kv_head + 1) if cfg.n_kv_head % h == 0 and h <= fit],
                default=1)
    return KLayout(heads, cfg.n_kv_head // heads, round_up(context, hw.dram.slots))


def fc_order(cfg: ModelConfig, hw: HwConfig) -> np.ndarray:
    """Column of ``mlp.c_fc`` stored as each vector of its region (``docs/dataflow.md``).

    GELU: the identity. SwiGLU: gate and up projections interleaved by input chunk of the MLP
    projection (``gb_elems`` elements of ``d_ff``): chunk ``t`` of the outputs is the gate's
    columns ``[t*G, t*G + L_t)`` then the up projection's, so the outputs of one chunk come out
    of the GEMV together and their gated product can start while later chunks stream.
    """
    f = cfg.d_ff
    if cfg.mlp != "swiglu":
        return np.arange(f)
    g = hw.dram.gb_elems
    parts = []
    for start in range(0, f, g):
        cols = np.arange(start, min(f, start + g))
        parts += [cols, cols + f]
    return np.concatenate(parts)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def map_model(cfg: ModelConfig, hw: HwConfig, context: int | None = None) -> MemoryMap:
    """Place ``cfg``'s weights and KV caches in ``hw``'s DRAM.

    Parameters
    ----------
    cfg : ModelConfig
        The model.
    hw : HwConfig
        The hardware.
    context : int, optional
        KV-cache capacity in tokens (default and maximum: ``cfg.ctx``).

    Returns
    -------
    MemoryMap

    Raises
    ------
    MappingError
        If the context is out of range or the model does not fit.
    """
    if context is None:
        context = cfg.ctx
    if isinstance(context, bool) or not isinstance(context, int) or not 1 <= context <= cfg.ctx:
        raise MappingError(
            f"context {context!r} is out of range for {cfg.name}; use 1..{cfg.ctx}"
        )
    dram = hw.dram
    geo = {"slots": dram.slots, "row_elems": dram.row_elems, "gb_elems": dram.gb_elems}
    mm = MemoryMap(cfg=cfg, hw=hw, context=context)
    d, f = cfg.d_model, cfg.d_ff
    next_row = 0

    def add(name: str, n_vectors: int, vec_len: int) -> None:
        nonlocal next_row
        reg = Region(name=name, row=next_row, n_vectors=n_vectors, vec_len=vec_len, **geo)
        mm.regions[name] = reg
        next_row += reg.n_rows

    shapes = weight_shapes(cfg)
    add("wte", cfg.vocab, d)
    if "wpe" in shapes:
        add("wpe", cfg.ctx, d)
    if "lm_head" in shapes:
        add("lm_head", cfg.vocab, d)
    params_d = [f"h.{i}.{p}" for i in range(cfg.n_layer) for p in _PARAMS_D]
    params_d += ["ln_f.weight", "ln_f.bias"]
    for region, names, length in (
        ("params_d", params_d, d),
        ("bias_qkv", [f"h.{i}.attn.c_attn.bias" for i in range(cfg.n_layer)], cfg.qkv_dim),
        ("bias_fc", [f"h.{i}.mlp.c_fc.bias" for i in range(cfg.n_layer)], cfg.fc_dim),
    ):
        names = [n for n in names if n in shapes]  # no biases, RMSNorm: fewer small vectors
        if not names:
            continue
        # every (member, piece) vector index below the last member's local index + 1
        add(region, -(-len(names) // dram.banks) * dram.slots, piece_len(length, hw))
        for member, name in enumerate(names):
            mm.vectors[name] = (region, member)
    for i in range(cfg.n_layer):
        add(f"h.{i}.attn.c_attn.weight", cfg.qkv_dim, d)
        add(f"h.{i}.attn.c_proj.weight", d, d)
        add(f"h.{i}.mlp.c_fc.weight", cfg.fc_dim, d)
        add(f"h.{i}.mlp.c_proj.weight", d, round_up(f, COL))
        kl = k_layout(cfg, hw, context)
        add(f"h.{i}.k_cache", kl.n_vectors, kl.heads * cfg.d_head)
        block = v_block_tokens(cfg, hw, context)
        add(f"h.{i}.v_cache", -(-round_up(context, COL) // block) * v_dims(cfg, hw), block)

    if mm.rows_used > dram.rows:
        need = mm.rows_used * dram.row_bytes * dram.slots
        raise MappingError(
            f"model {cfg.name} with a {context}-token KV cache needs {mm.rows_used} rows per bank "
            f"({_mib(need)}) but hw {hw.name} ({dram.channels} channels x {dram.banks} banks) has "
            f"{dram.rows} rows per bank ({_mib(dram.capacity_bytes)}); use hardware with more "
            "channels, banks or rows (--hw, or a sweep's dram axes) or a smaller model or context"
        )
    return mm


def to_bf16(values: np.ndarray) -> np.ndarray:
    """``numerics.f32_to_bf16`` with a fast path for arrays free of subnormals and NaNs.

    For normal, zero and infinite inputs the contract's rounding ``(b + 0x7FFF + lsb) >> 16`` cannot
    overflow 32 bits, so it runs in uint32 without the flush/NaN passes; anything else goes
    through :func:`pimgpt.core.numerics.f32_to_bf16`. Bit-identical to it (tested).
    """
    x = np.ascontiguousarray(values, dtype=np.float32)
    flat = x.reshape(-1).view(np.uint32)
    out = np.empty(flat.shape, dtype=np.uint16)
    block = 1 << 18  # cache-sized pieces: the passes below then stay in cache
    for lo in range(0, flat.size, block):
        b = flat[lo:lo + block]
        exp = b & np.uint32(0x7F800000)
        mant = b & np.uint32(0x7FFFFF)
        if (((exp == 0) | (exp == np.uint32(0x7F800000))) & (mant != 0)).any():
            return f32_to_bf16(x)
        r = b >> np.uint32(16)
        r &= np.uint32(1)
        r += b
        r += np.uint32(0x7FFF)
        r >>= np.uint32(16)
        out[lo:lo + block] = r
    return out.reshape(x.shape)


def summary(mm: MemoryMap) -> str:
    """One line: rows and bytes used of the hardware."""
    t = mm.to_dict()["totals"]
    return (
        f"{mm.cfg.name} on {mm.hw.name}: {t['rows_used']}/{t['rows_available']} rows per bank, "
        f"{t['bytes_used'] / 2**20:.1f} MiB of {t['bytes_available'] / 2**20:.0f} MiB "
        f"({100 * t['utilisation']:.1f} %)"
    )


