// Decoding a flat output index into (n, c, oh, ow), for kernels that walk every output element.
#pragma once

// Channels innermost (NHWC order) when c_inner, else NCHW order, so consecutive threads touch
// consecutive addresses in either layout.
__device__ __forceinline__ void decode_output_index(unsigned int i, int C, int OH, int OW, int c_inner,
                                                    unsigned int& n, unsigned int& c, unsigned int& oh,
                                                    unsigned int& ow)
{
    unsigned int t = i;
    if (c_inner) {
        c = t % C; t /= C; ow = t % OW; t /= OW; oh = t % OH; n = t / OH;
    } else {
        ow = t % OW; t /= OW; oh = t % OH; t /= OH; c = t % C; n = t / C;
    }
}
