// Direct 2-D cross-correlation (torch.nn.functional.conv2d semantics) on an already padded input.
//
//   out[n, j, oy, ox] = bias[j] + sum_{c < C/groups} sum_{ky, kx}
//                       weight[j, c, ky, kx] * x[n, g*C/groups + c, oy*SY + ky*DY, ox*SX + kx*DX]
//   with g = j / (J/groups), the group of output channel j.
//
// Work split (one CUDA block):
//   * TILE_H x TILE_W threads, one thread per output pixel of a TILE_H x TILE_W output tile;
//   * each thread accumulates OC_TILE output channels of one group (blockIdx.z picks image n,
//     group g and the channel tile; a grid-stride loop over z lifts the 65535 limit of gridDim.z);
//   * per input channel of the group, the block copies the input footprint of its output tile
//     (tile + halo, stride and dilation included) and the OC_TILE filters' taps into shared
//     memory, then every thread reads its window from there.
//
// Shared memory (dynamic, sized by the launcher: featuremap/_kernels/cuda/direct.py):
//   s_in : IN_H x IN_W floats, IN_H = (TILE_H - 1)*SY + (KH - 1)*DY + 1 (IN_W likewise)
//   s_w  : OC_TILE x KH x KW floats; taps of channels past the group's last filter are 0.
//
// All arrays are float32 and C-contiguous. Offsets into global memory are 64-bit. Tile cells past
// the input's bottom/right edge are filled with 0: only outputs outside [0, HO) x [0, WO) would
// read them, and those are never written.
//
// The source is plain C++ apart from the CUDA qualifiers, so the test suite also compiles it for
// the host with an emulated block (tests/engine/kernels/cuda/test_direct.py); that emulation supplies its own
// DYNAMIC_SHARED_FLOATS, the only hook.

#define TILE_H 16
#define TILE_W 16
#define OC_TILE 8

#ifndef DYNAMIC_SHARED_FLOATS
#define DYNAMIC_SHARED_FLOATS(name) extern __shared__ float name[]
#endif

extern "C" __global__ void direct_conv2d_f32(
    const float* __restrict__ x,       // (N, C, H, W), already padded
    const float* __restrict__ weight,  // (J, C / groups, KH, KW)
    const float* __restrict__ bias,    // (J,): the launcher passes zeros for a conv without bias
    float* __restrict__ out,           // (N, J, HO, WO)
    const int N, const int C, const int H, const int W,
    const int J, const int KH, const int KW,
    const int HO, const int WO,
    const int SY, const int SX, const int DY, const int DX,
    const int groups)
{
    DYNAMIC_SHARED_FLOATS(shared);
    const int in_h = (TILE_H - 1) * SY + (KH - 1) * DY + 1;
    const int in_w = (TILE_W - 1) * SX + (KW - 1) * DX + 1;
    const int taps = KH * KW;
    float* s_in = shared;
    float* s_w = shared + in_h * in_w;

    const int group_in = C / groups;    // input channels per group
    const int group_out = J / groups;   // output channels per group
    const int oc_tiles = (group_out + OC_TILE - 1) / OC_TILE;
    const long long n_z = (long long)N * groups * oc_tiles;

    const int tid = threadIdx.y * TILE_W + threadIdx.x;
    const int n_threads = TILE_H * TILE_W;
    const int oy = blockIdx.y * TILE_H + threadIdx.y;
    const int ox = blockIdx.x * TILE_W + threadIdx.x;
    const bool active = oy < HO && ox < WO;
    // Input coordinates of the tile's top-left window (output (blockIdx.y*TILE_H, blockIdx.x*TILE_W)).
    const long long iy0 = (long long)blockIdx.y * TILE_H * SY;
    const long long ix0 = (long long)blockIdx.x * TILE_W * SX;
    // This thread's window starts at row threadIdx.y*SY, column threadIdx.x*SX of the tile.
    const int window = threadIdx.y * SY * in_w + threadIdx.x * SX;

    for (long long z = blockIdx.z; z < n_z; z += gridDim.z) {
        const int tile = (int)(z % oc_tiles);
        const int g = (int)((z / oc_tiles) % groups);
        const long long n = z / ((long long)oc_tiles * groups);
        const int j0 = g * group_out + tile * OC_TILE;               // first output channel
        const int n_j = group_out - tile * OC_TILE < OC_TILE ? group_out - tile * OC_TILE : OC_TILE;

        float acc[OC_TILE];
#pragma unroll
        for (int k = 0; k < OC_TILE; ++k) acc[k] = 0.0f;

        for (int c = 0; c < group_in; ++c) {
            const float* plane = x + (n * C + (long long)g * group_in + c) * H * W;
            const float* filters = weight + ((long long)j0 * group_in + c) * taps;
            __syncthreads();  // every thread is done with the previous channel's tiles
            for (int i = tid; i < in_h * in_w; i += n_threads) {
                const long long iy = iy0 + i / in_w;
                const long long ix = ix0 + i % in_w;
                s_in[i] = (iy < H && ix < W) ? plane[iy * W + ix] : 0.0f;
            }
            for (int i = tid; i < OC_TILE * taps; i += n_threads) {
                // filter k = i / taps of this tile, tap i % taps; filter k sits group_in*taps further
                const int k = i / taps;
                s_w[i] = k < n_j ? filters[(long long)k * group_in * taps + i % taps] : 0.0f;
            }
            __syncthreads();
            if (active) {
                for (int ky = 0; ky < KH; ++ky) {
                    for (int kx = 0; kx < KW; ++kx) {
                        const float v = s_in[window + ky * DY * in_w + kx * DX];
                        const int tap = ky * KW + kx;
#pragma unroll
                        for (int k = 0; k < OC_TILE; ++k) acc[k] += v * s_w[k * taps + tap];
                    }
                }
            }
        }
        if (active) {
#pragma unroll
            for (int k = 0; k < OC_TILE; ++k) {
                if (k < n_j) {
                    const int j = j0 + k;
                    out[((n * J + j) * HO + oy) * WO + ox] = acc[k] + bias[j];
                }
            }
        }
    }
}
