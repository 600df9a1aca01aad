// The measurement-operator kernels (kernels/ct.cu, downsample.cu, inpaint.cu, tv.cu) on the CPU
// through shim.h, against the Rust CPU ops themselves: tests/kernel_emulation.rs computes the
// inputs and the CPU outputs with the crate and writes them to the directory given as argv[1]
// (manifest.txt, one case a line, and raw little-endian f32 files NAME.FIELD). Every output starts
// as NaN and must equal the CPU's bit for bit: the kernels repeat the CPU's operations in its
// order, and this build contracts nothing (-ffp-contract=off). The CT and downsample cases also
// run the dot test ⟨Ax, y⟩ = ⟨x, Aᵀy⟩ on the kernels' own outputs. Exits 1 on any mismatch.
#include "shim.h"
#include "ct.cu"
#include "downsample.cu"
#include "inpaint.cu"
#include "tv.cu"

#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

static std::string g_dir;
static int g_bad = 0;

static std::vector<float> load(const std::string& name, const char* field, size_t want) {
    const std::string path = g_dir + "/" + name + "." + field;
    std::ifstream f(path, std::ios::binary | std::ios::ate);
    if (!f) {
        std::printf("cannot read %s\n", path.c_str());
        std::exit(1);
    }
    const size_t bytes = (size_t)f.tellg();
    if (bytes != want * sizeof(float)) {
        std::printf("%s holds %zu bytes, expected %zu floats\n", path.c_str(), bytes, want);
        std::exit(1);
    }
    std::vector<float> v(want);
    f.seekg(0);
    f.read(reinterpret_cast<char*>(v.data()), (std::streamsize)bytes);
    return v;
}

static std::vector<float> poisoned(size_t n) { return std::vector<float>(n, NAN); }

// Ends the caller's line: whether `got` has the bits of `want`, else how many differ and by how
// much at most (NaN = an output never written).
static void same_bits(const std::vector<float>& got, const std::vector<float>& want) {
    size_t differ = 0;
    double worst = 0;
    for (size_t i = 0; i < got.size(); ++i)
        if (std::memcmp(&got[i], &want[i], sizeof(float)) != 0) {
            ++differ;
            worst = std::isnan(got[i]) ? INFINITY : std::max(worst, (double)std::fabs(got[i] - want[i]));
        }
    if (differ == 0) {
        std::printf(": %zu values, bit for bit ok\n", got.size());
    } else {
        std::printf(": %zu of %zu values differ (max |diff| %.3e) FAIL\n", differ, got.size(), worst);
        ++g_bad;
    }
}

static double dot(const std::vector<float>& a, const std::vector<float>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i)
        s += (double)a[i] * b[i];
    return s;
}

// The kernels' own adjoint identity: relative gap, within `bound`.
static void dot_test(const char* what, const std::vector<float>& ax, const std::vector<float>& y,
                     const std::vector<float>& x, const std::vector<float>& aty, double bound) {
    const double l = dot(ax, y), r = dot(x, aty), gap = std::fabs(l - r) / std::max(std::fabs(l), std::fabs(r));
    const bool ok = gap <= bound;
    std::printf("  %s dot test: <Ax,y> %.9e <x,A'y> %.9e, relative gap %.2e %s\n", what, l, r, gap,
                ok ? "ok" : "FAIL");
    g_bad += !ok;
}

static dim3 grid_for(int cols, int rows, int planes) {
    return {(unsigned)((cols + 15) / 16), (unsigned)((rows + 15) / 16), (unsigned)planes};
}
static const dim3 kBlock16{16, 16, 1};

static void ct_case(const std::string& name, int n, int h, int w, int v, int d) {
    const size_t img = (size_t)n * h * w, sino = (size_t)n * v * d;
    const auto x = load(name, "x", img), y = load(name, "y", sino), angles = load(name, "angles", 2 * v);
    auto ax = poisoned(sino), aty = poisoned(img), ry = poisoned(sino);
    launch(grid_for(d, v, n), kBlock16, [&] { ct_project(x.data(), angles.data(), ax.data(), n, h, w, v, d); });
    std::printf("ct_project %s", name.c_str());
    same_bits(ax, load(name, "ax", sino));
    launch(grid_for(w, h, n), kBlock16, [&] { ct_backproject(y.data(), angles.data(), aty.data(), n, h, w, v, d); });
    std::printf("ct_backproject %s", name.c_str());
    same_bits(aty, load(name, "aty", img));
    launch(grid_for(d, v, n), kBlock16, [&] { ct_ramp_filter(y.data(), ry.data(), n, v, d); });
    std::printf("ct_ramp_filter %s", name.c_str());
    same_bits(ry, load(name, "ry", sino));
    dot_test("ct", ax, y, x, aty, 1e-5);
}

static void downsample_case(const std::string& name, int n, int h, int w, int f) {
    const size_t big = (size_t)n * h * w, small = big / (f * f);
    const auto x = load(name, "x", big), y = load(name, "y", small);
    auto ax = poisoned(small), aty = poisoned(big);
    launch(grid_for(w / f, h / f, n), kBlock16, [&] { downsample(x.data(), ax.data(), n, h, w, f); });
    std::printf("downsample %s", name.c_str());
    same_bits(ax, load(name, "ax", small));
    launch(grid_for(w, h, n), kBlock16, [&] { downsample_adjoint(y.data(), aty.data(), n, h, w, f); });
    std::printf("downsample_adjoint %s", name.c_str());
    same_bits(aty, load(name, "aty", big));
    dot_test("downsample", ax, y, x, aty, 1e-6);
}

static void inpaint_case(const std::string& name, int n, int h, int w) {
    const size_t len = (size_t)n * h * w;
    const auto x = load(name, "x", len), m = load(name, "m", (size_t)h * w);
    auto out = poisoned(len);
    launch(grid_for(w, h, n), kBlock16, [&] { inpaint_mask(x.data(), m.data(), out.data(), n, h, w); });
    std::printf("inpaint_mask %s", name.c_str());
    same_bits(out, load(name, "ax", len));
}

static float from_bits(unsigned long bits) {
    const uint32_t u = (uint32_t)bits;
    float f;
    std::memcpy(&f, &u, sizeof f);
    return f;
}

static void tv_case(const std::string& name, int n, int h, int w, float step, float lam) {
    const size_t len = (size_t)n * h * w;
    const auto xbar = load(name, "xbar", len), atq = load(name, "atq", len);
    auto px = load(name, "px", len), py = load(name, "py", len), x = load(name, "x", len);
    launch(grid_for(w, h, n), kBlock16, [&] { tv_dual_update(xbar.data(), step, lam, px.data(), py.data(), n, h, w); });
    std::printf("tv_dual_update %s px", name.c_str());
    same_bits(px, load(name, "px1", len));
    std::printf("tv_dual_update %s py", name.c_str());
    same_bits(py, load(name, "py1", len));
    auto xbar_out = poisoned(len);
    launch(grid_for(w, h, n), kBlock16,
           [&] { tv_primal_update(atq.data(), px.data(), py.data(), step, x.data(), xbar_out.data(), n, h, w); });
    std::printf("tv_primal_update %s x", name.c_str());
    same_bits(x, load(name, "x1", len));
    std::printf("tv_primal_update %s xbar", name.c_str());
    same_bits(xbar_out, load(name, "xbar1", len));
}

int main(int argc, char** argv) {
    if (argc != 2) {
        std::printf("usage: ops CASE_DIR\n");
        return 1;
    }
    g_dir = argv[1];
    std::ifstream manifest(g_dir + "/manifest.txt");
    std::string line;
    int cases = 0;
    while (std::getline(manifest, line)) {
        std::istringstream in(line);
        std::string op, name;
        int n, h, w;
        in >> op >> name >> n >> h >> w;
        int v = 0, d = 0, f = 0;
        unsigned long step = 0, lam = 0;
        if (op == "ct")
            in >> v >> d;
        else if (op == "downsample")
            in >> f;
        else if (op == "tv")
            in >> std::hex >> step >> lam;
        if (!in || (op != "ct" && op != "downsample" && op != "inpaint" && op != "tv")) {
            std::printf("malformed case line: %s\n", line.c_str());
            return 1;
        }
        if (op == "ct")
            ct_case(name, n, h, w, v, d);
        else if (op == "downsample")
            downsample_case(name, n, h, w, f);
        else if (op == "inpaint")
            inpaint_case(name, n, h, w);
        else
            tv_case(name, n, h, w, from_bits(step), from_bits(lam));
        ++cases;
    }
    if (cases == 0) {
        std::printf("no cases in %s/manifest.txt\n", g_dir.c_str());
        return 1;
    }
    std::printf("%d cases: %s\n", cases, g_bad ? "FAILURES" : "ALL OK");
    return g_bad != 0;
}
