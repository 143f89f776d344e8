"""8 x 8 transposes between the examples' row-major layout and the soft-DTW tiles' lane-major
one, as numba intrinsics (generic LLVM IR shuffles: LLVM picks the target's instructions).

Used by :mod:`procalign.dp._numba_sdtw` to gather each tile's costs (``tr8_gather``) and to
scatter its gradient back (``tr8_scatter``); tested through the tile kernels
(tests/dp/test_soft_dtw_tiles.py).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _shuf(b, x, y, idx):
    return b.shuffle_vector(x, y, ir.Constant(ir.VectorType(_I32, len(idx)), idx))


def _transpose8(b, rows):
    """IR for the transpose of eight 8-element vectors (``rows[r][c]`` -> ``out[c][r]``): the
    classic three stages, interleave pairs of rows, then pairs of pairs, then swap 128-bit
    halves; in generic IR, so LLVM picks the target's shuffles."""
    t = []
    for k in range(0, 8, 2):  # t[k] = (r_k0 r_k+1,0 r_k1 r_k+1,1 | same for columns 4, 5), ...
        t.append(_shuf(b, rows[k], rows[k + 1], [0, 8, 1, 9, 4, 12, 5, 13]))
        t.append(_shuf(b, rows[k], rows[k + 1], [2, 10, 3, 11, 6, 14, 7, 15]))
    s = []
    for a, c in ((0, 2), (1, 3), (4, 6), (5, 7)):
        s.append(_shuf(b, t[a], t[c], [0, 1, 8, 9, 4, 5, 12, 13]))
        s.append(_shuf(b, t[a], t[c], [2, 3, 10, 11, 6, 7, 14, 15]))
    # s[k] (k < 4) holds column k of rows 0-3 in its low half and column k + 4 in its high
    # half; s[k + 4] the same for rows 4-7
    out = [None] * 8
    for k in range(4):
        out[k] = _shuf(b, s[k], s[k + 4], [0, 1, 2, 3, 8, 9, 10, 11])
        out[k + 4] = _shuf(b, s[k], s[k + 4], [4, 5, 6, 7, 12, 13, 14, 15])
    return out


@intrinsic
def tr8_gather(typingctx, src, offs, q0, j0, dst):  # pragma: no cover - compiled
    """dst[j0 + c, q0 + r] = src[offs[q0 + r] + j0 + c] for r, c < 8: eight rows of 8 elements
    from the flat ``src`` (starting at the uint64 offsets ``offs[q0:q0 + 8]``, plus ``j0``)
    written as eight lane-major rows of ``dst`` (C-contiguous 2-d, ``src``'s dtype). Vector loads,
    then the three-stage 8 x 8 shuffle transpose (unpack, shuffle, 128-bit permute) in generic
    LLVM IR, then vector stores: LLVM lowers it to whatever the target has (on AVX2, 24 shuffles
    per 64 elements, where the scalar copy spent a load and a store on each)."""
    if src.dtype != dst.dtype or not isinstance(q0, types.Integer) or not isinstance(j0, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        srcv, offv, q0v, j0v, dstv = args
        q0v = context.cast(builder, q0v, sig.args[2], types.int64)
        j0v = context.cast(builder, j0v, sig.args[3], types.int64)
        sa = context.make_array(sig.args[0])(context, builder, srcv)
        oa = context.make_array(sig.args[1])(context, builder, offv)
        da = context.make_array(sig.args[4])(context, builder, dstv)
        vt = ir.VectorType(context.get_value_type(sig.args[0].dtype), 8)
        al = sig.args[0].dtype.bitwidth // 8  # element alignment only
        rows = []
        for r in range(8):
            o = builder.load(builder.gep(oa.data, [builder.add(q0v, ir.Constant(_I64, r))]))
            p = builder.gep(sa.data, [builder.add(o, j0v)])
            rows.append(builder.load(builder.bitcast(p, vt.as_pointer()), align=al))
        cols = _transpose8(builder, rows)
        ld = cgutils.unpack_tuple(builder, da.shape)[1]  # dst row length (C-contiguous)
        for c in range(8):
            idx = builder.add(builder.mul(builder.add(j0v, ir.Constant(_I64, c)), ld), q0v)
            p = builder.gep(da.data, [idx])
            builder.store(cols[c], builder.bitcast(p, vt.as_pointer()), align=al)
        return context.get_dummy_value()

    return types.void(src, offs, q0, j0, dst), codegen


@intrinsic
def tr8_scatter(typingctx, src, q0, j0, dst, offs):  # pragma: no cover - compiled
    """dst[offs[q0 + r] + j0 + c] = src[j0 + c, q0 + r] for r, c < 8: the inverse of
    ``tr8_gather`` (eight lane-major rows of the C-contiguous 2-d ``src`` written as eight rows
    of 8 elements of the flat ``dst``), rounding to ``dst``'s dtype (float64 -> float32) before
    the shuffles."""
    if not (isinstance(q0, types.Integer) and isinstance(j0, types.Integer)):
        return None
    if src.dtype not in (types.float32, types.float64) or dst.dtype not in (types.float32, types.float64):
        return None

    def codegen(context, builder, sig, args):
        srcv, q0v, j0v, dstv, offv = args
        q0v = context.cast(builder, q0v, sig.args[1], types.int64)
        j0v = context.cast(builder, j0v, sig.args[2], types.int64)
        sa = context.make_array(sig.args[0])(context, builder, srcv)
        da = context.make_array(sig.args[3])(context, builder, dstv)
        oa = context.make_array(sig.args[4])(context, builder, offv)
        st = ir.VectorType(context.get_value_type(sig.args[0].dtype), 8)
        dt = ir.VectorType(context.get_value_type(sig.args[3].dtype), 8)
        sal = sig.args[0].dtype.bitwidth // 8
        dal = sig.args[3].dtype.bitwidth // 8
        ld = cgutils.unpack_tuple(builder, sa.shape)[1]  # src row length (C-contiguous)
        rows = []
        for c in range(8):
            idx = builder.add(builder.mul(builder.add(j0v, ir.Constant(_I64, c)), ld), q0v)
            v = builder.load(builder.bitcast(builder.gep(sa.data, [idx]), st.as_pointer()), align=sal)
            if sig.args[0].dtype.bitwidth > sig.args[3].dtype.bitwidth:
                v = builder.fptrunc(v, dt)
            elif sig.args[0].dtype.bitwidth < sig.args[3].dtype.bitwidth:
                v = builder.fpext(v, dt)
            rows.append(v)
        cols = _transpose8(builder, rows)
        for r in range(8):
            o = builder.load(builder.gep(oa.data, [builder.add(q0v, ir.Constant(_I64, r))]))
            p = builder.gep(da.data, [builder.add(o, j0v)])
            builder.store(cols[r], builder.bitcast(p, dt.as_pointer()), align=dal)
        return context.get_dummy_value()

    return types.void(src, q0, j0, dst, offs), codegen
