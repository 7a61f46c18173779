# Row-major GEMM on top of scipy.linalg.cython_blas, written once for float and double.
#
# BLAS is column-major; every array in lstmcpu is row-major (C order). A row-major (r, s)
# array with leading dimension ld is, unchanged in memory, the column-major (s, r) array,
# i.e. its transpose. So the row-major product C = op(A) @ op(B) is computed as the
# column-major product C.T = op(B).T @ op(A).T: swap the operands (and the sizes m and n)
# and keep each operand's transpose flag. Callers think in NumPy terms only; this is the one
# place that knows BLAS's layout. (Inline: it is compiled into each module that cimports it.)

from cython cimport floating
from scipy.linalg.cython_blas cimport dgemm, sgemm


cdef inline void gemm(bint trans_a, bint trans_b, int m, int n, int k,
                      floating alpha, const floating* a, int lda,
                      const floating* b, int ldb,
                      floating beta, floating* c, int ldc) noexcept nogil:
    """C = alpha * op(A) @ op(B) + beta * C on row-major arrays.

    op(A) is (m, k), op(B) is (k, n) and C is (m, n); op(X) is X.T when trans_x. lda, ldb
    and ldc are the row strides in elements. Empty products are handled here, so BLAS never
    sees a zero size.
    """
    cdef char ta = b"T" if trans_a else b"N"
    cdef char tb = b"T" if trans_b else b"N"
    cdef int i, j
    if m <= 0 or n <= 0:
        return
    if k <= 0:
        # NumPy: C *= beta
        for i in range(m):
            for j in range(n):
                c[i * ldc + j] = 0 if beta == 0 else beta * c[i * ldc + j]
        return
    # Column-major C.T (n, m) = op(B).T (n, k) @ op(A).T (k, m): the operands swapped.
    if floating is float:
        sgemm(&tb, &ta, &n, &m, &k, &alpha, <float*> b, &ldb, <float*> a, &lda,
              &beta, c, &ldc)
    else:
        dgemm(&tb, &ta, &n, &m, &k, &alpha, <double*> b, &ldb, <double*> a, &lda,
              &beta, c, &ldc)
