"""
Synthetic TT device-op lists, as a dry-run's --graph writes them (dpt_ros/perf/tt_estimate.py).

`t` is a tensor, `op` a device op; `matmul` and `sdpa` the two the estimate weighs most;
`vit_like` a few ViT-B layers at batch 8, the shape the published ViT figures calibrate on.
"""
CONFIGS = {'grid': [8, 8], 'encoder_grid': [8, 5], 'attention_grid': [8, 8], 'batch': 1,
           'tokens_padded': 640}


def t(shape, memory='L1/BLOCK_SHARDED', dtype='BFLOAT16', layout='TILE'):
    return {'shape': str(list(shape)), 'dtype': dtype, 'layout': layout, 'memory': memory}


def op(name, inputs, outputs, python_index=0, call='ttnn.linear', **settings):
    return {'name': name, 'call': call, 'python_index': python_index, 'inputs': inputs,
            'outputs': outputs, 'cb_cores': 0, 'settings': settings,
            'fidelity': settings.get('fidelity')}


def matmul(m=640, k=1024, n=1024, act=None, fidelity='HiFi2', grid=(8, 5), index=0):
    extra = {'activation': act} if act else {}
    weight = t([k, n], 'DRAM/INTERLEAVED', 'BFLOAT8_B')
    return op('MatmulDeviceOperation', [t([1, m, k]), weight], [t([1, m, n])], index,
              fidelity=fidelity, grid=list(grid), **extra)


def sdpa(tokens=640, heads=16, chunk=128, exp_approx=False, mask=True):
    ins = [t([1, heads, tokens, 64], 'L1/INTERLEAVED') for _ in range(3)]
    if mask:
        ins.append(t([1, 1, tokens, tokens], 'DRAM/INTERLEAVED'))
    return op('SDPAOperation', ins, [t([1, heads, tokens, 64], 'L1/INTERLEAVED')],
              call='ttnn.transformer.scaled_dot_product_attention', fidelity='HiFi4',
              grid=[8, 8], q_chunk=chunk, k_chunk=chunk, exp_approx=exp_approx)


def vit_like():
    """Return a small stand-in of a ViT batch: 8 images, a few layers of real-sized ops."""
    cfg = dict(CONFIGS, batch=8, tokens_padded=256, encoder_grid=[8, 8])
    ops = []
    for i in range(4):
        ops += [matmul(m=2048, k=768, n=2304, grid=(8, 8), index=i),
                sdpa(tokens=256, heads=12 * 8, chunk=256),
                matmul(m=2048, k=768, n=3072, act='gelu', grid=(8, 8), index=i),
                matmul(m=2048, k=3072, n=768, grid=(8, 8), index=i)]
    return {'configs': cfg, 'stage_starts': {'backbone': 0}, 'ops': ops}
