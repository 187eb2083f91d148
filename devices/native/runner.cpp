// et-bench: the toolkit's native ExecuTorch benchmark program (devices/native, docs/devices.md).
//
// Loads one .pte with the ExecuTorch C++ runtime (Module), sets the XNNPACK threadpool size, runs the method once
// (first_ms), `--warmup` more times untimed, then `--iters` timed times in this one process, and prints ONE JSON line
// on stdout: the raw per-iteration wall times (steady clock around the forward call alone) and process CPU times
// (CLOCK_PROCESS_CPUTIME_ID, read outside the wall-clock window), load and first-run times, peak RSS and versions.
//
//   et-bench --model F.pte [--threads N] [--warmup W] [--iters N] [--input raw_f32] [--output raw_f32] [--verbose]
//
// Input: the method's first input, shape and dtype from its metadata; float32 from --input (raw, C order) or a
// deterministic fill in [-1, 1). float16 programs get the values converted. --output writes the first output as raw
// float32. Errors (missing file, corrupt program, bad arguments) are one line on stderr and a non-zero exit: 2 for
// bad arguments, 3 for a missing or corrupt program, 1 for a failed run. The runtime's own log lines are kept out of
// stderr (--verbose shows them); the last error it logged is quoted in the error line.
//
// Builds against the executorch pip wheel (find_package(executorch), CMakeLists.txt beside this file) and, with the
// NDK's toolchain file, against an ExecuTorch built for Android.

#include <executorch/extension/module/module.h>
#include <executorch/extension/tensor/tensor.h>
#include <executorch/runtime/core/portable_type/half.h>
#include <executorch/runtime/platform/platform.h>
#include <executorch/runtime/platform/runtime.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>
#include <vector>

#if defined(ET_USE_THREADPOOL)
#if __has_include(<executorch/extension/threadpool/threadpool.h>)
#include <executorch/extension/threadpool/threadpool.h>
#else
// The wheel ships libexecutorch_threadpool.so but not its header: the two calls used here, as the library exports
// them (nm -DC libexecutorch_threadpool.so).
namespace executorch::extension::threadpool {
class ThreadPool {
 public:
  size_t get_thread_count() const;
  bool _unsafe_reset_threadpool(uint32_t num_threads);
};
ThreadPool* get_threadpool();
}  // namespace executorch::extension::threadpool
#endif
#endif

#ifndef ET_BENCH_EXECUTORCH_VERSION
#define ET_BENCH_EXECUTORCH_VERSION "unknown"
#endif

namespace {

constexpr const char* kTool = "et-bench";
constexpr int kToolVersion = 1;  // bump when the JSON line changes
constexpr int kCalibrationIters = 2000;
constexpr int kExitRun = 1, kExitUsage = 2, kExitLoad = 3;  // a failed forward; bad arguments; a bad program

using executorch::aten::ScalarType;
using executorch::extension::Module;
using executorch::runtime::Error;
using Clock = std::chrono::steady_clock;

struct Failure : std::runtime_error {
  int code;
  Failure(const std::string& what, int exit_code) : std::runtime_error(what), code(exit_code) {}
};

[[noreturn]] void usage(const std::string& what) { throw Failure(what + " (see --help)", kExitUsage); }

// ------------------------------------------------------------------------------------------ runtime log capture
bool g_verbose = false;
std::string g_last_error;  // the last error-level line the runtime logged, quoted when we fail

void capture_log(et_timestamp_t, et_pal_log_level_t level, const char* file, const char*, size_t line,
                 const char* message, size_t length) {
  std::string text(message, length);
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.pop_back();
  for (auto& c : text)  // it may quote bytes of a corrupt file: keep the line printable
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  if (level == kError || level == kFatal) g_last_error = text;
  if (g_verbose) std::fprintf(stderr, "%c %s:%zu] %s\n", static_cast<char>(level), file ? file : "?", line,
                              text.c_str());
}

std::string runtime_said() { return g_last_error.empty() ? "" : " (runtime: " + g_last_error + ")"; }

std::string error_name(Error e) { return executorch::runtime::to_string(e); }

// ------------------------------------------------------------------------------------------ arguments
struct Args {
  std::string model, input, output;
  long threads = 1, warmup = 10, iters = 100;
};

long whole(const std::string& flag, const char* text, long lo, long hi) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(text, &end, 10);
  if (errno || end == text || *end != '\0' || v < lo || v > hi)
    usage(flag + " takes a whole number from " + std::to_string(lo) + " to " + std::to_string(hi) + ", not '" +
          text + "'");
  return v;
}

const char* kHelp =
    "usage: et-bench --model F.pte [--threads N] [--warmup W] [--iters N] [--input FILE] [--output FILE] "
    "[--verbose]\n"
    "Times one ExecuTorch program in this process and prints one JSON line: load_ms, first_ms, samples_ms,\n"
    "cpu_samples_ms (one per timed iteration), peak_rss_mb, versions.\n"
    "  --threads N   XNNPACK threadpool size (default 1)\n"
    "  --warmup W    untimed runs after the first one (default 10)\n"
    "  --iters N     timed runs (default 100; 0 = load and warm up only)\n"
    "  --input FILE  the first input as raw float32 in C order (default: a deterministic fill)\n"
    "  --output FILE write the first output of the last run as raw float32\n"
    "  --verbose     show the runtime's log lines on stderr\n";

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kHelp, stdout);
      std::exit(0);
    }
    if (flag == "--version") {
      std::printf("%s %d (executorch %s)\n", kTool, kToolVersion, ET_BENCH_EXECUTORCH_VERSION);
      std::exit(0);
    }
    if (flag == "--verbose") {
      g_verbose = true;
      continue;
    }
    if (i + 1 >= argc) usage("unknown argument or missing value: " + flag);
    const char* value = argv[++i];
    if (flag == "--model") a.model = value;
    else if (flag == "--input") a.input = value;
    else if (flag == "--output") a.output = value;
    else if (flag == "--threads") a.threads = whole(flag, value, 1, 1024);
    else if (flag == "--warmup") a.warmup = whole(flag, value, 0, 100000000);
    else if (flag == "--iters") a.iters = whole(flag, value, 0, 100000000);
    else usage("unknown argument " + flag);
  }
  if (a.model.empty()) usage("--model F.pte is required");
  return a;
}

// ------------------------------------------------------------------------------------------ helpers
double ms(Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

int64_t cpu_ns() {
  timespec ts{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1000000000LL + ts.tv_nsec;
}

// Peak resident memory of this program. Linux: VmHWM of /proc/self/status, the high-water mark of this process
// image alone. Not getrusage's ru_maxrss there: across fork + exec it keeps the parent's peak (measured: a child of
// the Python worker reported the worker's 757 MB against its own 35 MB).
double peak_rss_mb() {
#if defined(__linux__)
  if (std::FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    long kb = -1;
    while (std::fgets(line, sizeof line, f))
      if (std::strncmp(line, "VmHWM:", 6) == 0) kb = std::strtol(line + 6, nullptr, 10);
    std::fclose(f);
    if (kb >= 0) return kb / 1024.0;
  }
#endif
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) != 0) return -1.0;
#if defined(__APPLE__)
  return ru.ru_maxrss / (1024.0 * 1024.0);  // bytes there
#else
  return ru.ru_maxrss / 1024.0;  // kilobytes on Linux and Android
#endif
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') out += '\\', out += static_cast<char>(c);
    else if (c < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", c);
      out += buf;
    } else out += static_cast<char>(c);
  }
  return out + "\"";
}

std::string json_numbers(const std::vector<double>& xs) {
  std::string out = "[";
  char buf[32];
  for (size_t i = 0; i < xs.size(); ++i) {
    std::snprintf(buf, sizeof buf, "%s%.6f", i ? "," : "", xs[i]);
    out += buf;
  }
  return out + "]";
}

std::string json_ints(const std::vector<int64_t>& xs) {
  std::string out = "[";
  for (size_t i = 0; i < xs.size(); ++i) out += (i ? "," : "") + std::to_string(xs[i]);
  return out + "]";
}

std::vector<float> read_input(const std::string& path, size_t numel) {
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Failure("cannot read --input " + path, kExitUsage);
  auto size = static_cast<size_t>(f.tellg());
  if (size != numel * sizeof(float))
    throw Failure("--input " + path + " has " + std::to_string(size) + " bytes; the program's input needs " +
                  std::to_string(numel) + " float32 values (" + std::to_string(numel * sizeof(float)) + " bytes)",
                  kExitUsage);
  std::vector<float> x(numel);
  f.seekg(0);
  f.read(reinterpret_cast<char*>(x.data()), static_cast<std::streamsize>(size));
  return x;
}

std::vector<float> deterministic_fill(size_t numel) {
  std::vector<float> x(numel);
  uint32_t state = 0x9E3779B9u;
  for (auto& v : x) {
    state = state * 1664525u + 1013904223u;  // a fixed LCG: the same input on every machine
    v = static_cast<float>(state >> 8) / static_cast<float>(1u << 24) * 2.0f - 1.0f;
  }
  return x;
}

void write_output(const std::string& path, const executorch::aten::Tensor& t) {
  std::vector<float> y(static_cast<size_t>(t.numel()));
  if (t.scalar_type() == ScalarType::Float) {
    std::memcpy(y.data(), t.const_data_ptr<float>(), y.size() * sizeof(float));
  } else if (t.scalar_type() == ScalarType::Half) {
    const auto* h = t.const_data_ptr<executorch::aten::Half>();
    for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<float>(h[i]);
  } else {
    throw Failure("--output: the program's output has dtype code " +
                  std::to_string(static_cast<int>(t.scalar_type())) + "; only float32 and float16 are written", kExitRun);
  }
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(y.data()), static_cast<std::streamsize>(y.size() * sizeof(float)));
  if (!f) throw Failure("cannot write --output " + path, kExitRun);
}

long set_threads(long threads) {
#if defined(ET_USE_THREADPOOL)
  auto* pool = executorch::extension::threadpool::get_threadpool();
  if (pool == nullptr) throw Failure("the ExecuTorch threadpool is not available", kExitRun);
  if (static_cast<long>(pool->get_thread_count()) != threads)
    pool->_unsafe_reset_threadpool(static_cast<uint32_t>(threads));
  return static_cast<long>(pool->get_thread_count());
#else
  if (threads != 1) throw Failure("this ExecuTorch was built without a threadpool: only --threads 1 works", kExitUsage);
  return 1;
#endif
}

// The harness's own per-iteration cost: the timed loop's clock reads around nothing (median, microseconds).
double overhead_us() {
  std::vector<double> xs(kCalibrationIters);
  int64_t used = 0;  // the CPU-time reads sit outside the window, as in the timed loop
  for (auto& x : xs) {
    const int64_t c0 = cpu_ns();
    const auto t0 = Clock::now();
    const auto t1 = Clock::now();
    used += cpu_ns() - c0;
    x = ms(t1 - t0) * 1e3;
  }
  if (used < 0) xs[0] = 0.0;  // keeps the reads observable
  std::nth_element(xs.begin(), xs.begin() + xs.size() / 2, xs.end());
  return xs[xs.size() / 2];
}

// ------------------------------------------------------------------------------------------ the benchmark
int run(const Args& a) {
  struct stat st {};
  if (stat(a.model.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) throw Failure("no such file: " + a.model, kExitLoad);
  const long threads = set_threads(a.threads);

  Module module(a.model, Module::LoadMode::Mmap);
  auto t0 = Clock::now();
  Error err = module.load(executorch::runtime::Program::Verification::InternalConsistency);
  if (err != Error::Ok)
    throw Failure("cannot load " + a.model + " (corrupt or not an ExecuTorch program?): " + error_name(err) +
                  runtime_said(), kExitLoad);
  err = module.load_method("forward");
  if (err != Error::Ok)
    throw Failure("cannot load method forward of " + a.model + ": " + error_name(err) + runtime_said(), kExitLoad);
  const double load_ms = ms(Clock::now() - t0);

  auto meta = module.method_meta("forward");
  if (!meta.ok()) throw Failure("no metadata for forward in " + a.model + ": " + error_name(meta.error()), kExitLoad);
  if (meta->num_inputs() != 1)
    throw Failure(a.model + ": forward takes " + std::to_string(meta->num_inputs()) + " inputs; et-bench feeds one",
                  kExitLoad);
  auto info = meta->input_tensor_meta(0);
  if (!info.ok()) throw Failure(a.model + ": the input of forward is not a tensor", kExitLoad);
  std::vector<executorch::aten::SizesType> sizes(info->sizes().begin(), info->sizes().end());
  std::vector<int64_t> shape(sizes.begin(), sizes.end());
  size_t numel = 1;
  for (auto s : sizes) numel *= static_cast<size_t>(s);
  const ScalarType dtype = info->scalar_type();
  if (dtype != ScalarType::Float && dtype != ScalarType::Half)
    throw Failure(a.model + ": input dtype code " + std::to_string(static_cast<int>(dtype)) +
                  " (et-bench feeds float32 or float16)", kExitLoad);

  std::vector<float> x = a.input.empty() ? deterministic_fill(numel) : read_input(a.input, numel);
  std::vector<executorch::aten::Half> xh;
  void* data = x.data();
  if (dtype == ScalarType::Half) {
    xh.reserve(numel);
    for (float v : x) xh.emplace_back(v);
    data = xh.data();
  }
  auto input = executorch::extension::from_blob(data, sizes, dtype);

  auto failed = [&](Error e) {
    return Failure("forward failed on " + a.model + ": " + error_name(e) + runtime_said(), kExitRun);
  };
  auto forward = [&]() -> std::vector<executorch::runtime::EValue> {
    auto r = module.forward(input);
    if (!r.ok()) throw failed(r.error());
    return std::move(*r);
  };
  t0 = Clock::now();
  auto out = forward();
  const double first_ms = ms(Clock::now() - t0);
  for (long i = 0; i < a.warmup; ++i) out = forward();

  std::vector<double> wall(static_cast<size_t>(a.iters)), used(static_cast<size_t>(a.iters));
  for (long i = 0; i < a.iters; ++i) {
    const int64_t c0 = cpu_ns();
    const auto w0 = Clock::now();
    auto r = module.forward(input);
    const auto w1 = Clock::now();
    const int64_t c1 = cpu_ns();
    if (!r.ok()) throw failed(r.error());
    wall[static_cast<size_t>(i)] = ms(w1 - w0);
    used[static_cast<size_t>(i)] = static_cast<double>(c1 - c0) / 1e6;
    out = std::move(*r);
  }
  const double overhead = overhead_us();

  std::vector<int64_t> out_shape;
  if (out.empty() || !out[0].isTensor()) throw Failure(a.model + ": the first output is not a tensor", kExitRun);
  const auto& y = out[0].toTensor();
  for (auto s : y.sizes()) out_shape.push_back(s);
  if (!a.output.empty()) write_output(a.output, y);

  std::string line = "{";
  char buf[64];
  auto num = [&](const char* key, double v) {
    std::snprintf(buf, sizeof buf, "%.6f", v);
    line += json_string(key) + ":" + buf + ",";
  };
  line += "\"tool\":" + json_string(kTool) + ",\"tool_version\":" + std::to_string(kToolVersion) + ",";
  line += "\"executorch\":" + json_string(ET_BENCH_EXECUTORCH_VERSION) + ",";
  line += "\"model\":" + json_string(a.model) + ",";
  line += "\"threads\":" + std::to_string(threads) + ",\"warmup\":" + std::to_string(a.warmup) + ",";
  line += "\"iters\":" + std::to_string(a.iters) + ",";
  num("load_ms", load_ms);
  num("first_ms", first_ms);
  num("overhead_us", overhead);
  const double rss = peak_rss_mb();
  if (rss >= 0) num("peak_rss_mb", rss);
  line += "\"input\":{\"shape\":" + json_ints(shape) + ",\"dtype\":" +
          json_string(dtype == ScalarType::Half ? "float16" : "float32") + ",\"source\":" +
          json_string(a.input.empty() ? "fill" : "file") + "},";
  line += "\"output\":{\"shape\":" + json_ints(out_shape) + "},";
  line += "\"samples_ms\":" + json_numbers(wall) + ",\"cpu_samples_ms\":" + json_numbers(used) + "}";
  std::puts(line.c_str());
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  executorch::runtime::register_pal(executorch::runtime::PalImpl::create(capture_log, __FILE__));
  executorch::runtime::runtime_init();
  try {
    return run(parse(argc, argv));
  } catch (const Failure& f) {
    std::fprintf(stderr, "%s: error: %s\n", kTool, f.what());
    return f.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: error: %s%s\n", kTool, e.what(), runtime_said().c_str());
    return kExitRun;
  }
}
