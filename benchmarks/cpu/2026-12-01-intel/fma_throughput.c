#include <immintrin.h>
#include <stdio.h>
#include <time.h>
static double now(){struct timespec t;clock_gettime(CLOCK_MONOTONIC,&t);return t.tv_sec+t.tv_nsec*1e-9;}
__attribute__((target("avx512f"))) double f512(long n){
  __m512 a[12]; __m512 b=_mm512_set1_ps(1.0000001f), c=_mm512_set1_ps(1e-7f);
  for(int i=0;i<12;i++) a[i]=_mm512_set1_ps(i);
  double t=now();
  for(long k=0;k<n;k++){ for(int i=0;i<12;i++) a[i]=_mm512_fmadd_ps(a[i],b,c); }
  t=now()-t; float s=0; for(int i=0;i<12;i++) s+=_mm512_reduce_add_ps(a[i]);
  if(s==1234.5f) printf("x");
  return n*12.0*32/t/1e9;
}
__attribute__((target("avx2,fma"))) double f256(long n){
  __m256 a[12]; __m256 b=_mm256_set1_ps(1.0000001f), c=_mm256_set1_ps(1e-7f);
  for(int i=0;i<12;i++) a[i]=_mm256_set1_ps(i);
  double t=now();
  for(long k=0;k<n;k++){ for(int i=0;i<12;i++) a[i]=_mm256_fmadd_ps(a[i],b,c); }
  t=now()-t; float s=0; float tmp[8]; for(int i=0;i<12;i++){_mm256_storeu_ps(tmp,a[i]); s+=tmp[0];}
  if(s==1234.5f) printf("x");
  return n*12.0*16/t/1e9;
}
int main(){ for(int r=0;r<3;r++) printf("avx512 %.1f GFLOP/s  avx2 %.1f GFLOP/s (one thread)\n", f512(200000000), f256(200000000)); }
