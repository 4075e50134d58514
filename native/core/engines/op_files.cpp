// Reading and writing op stream files (op_files.h).
#include "engines/op_files.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <new>
#include <random>

namespace pinlab::ops {

namespace {

constexpr size_t kIoBytes = size_t{1} << 20;

Status path_fail(Code c, Reason r, const std::string& path, int64_t value = 0, int64_t limit = 0,
                 const char* rule = nullptr) {
  return Status{c, r, intern_source(path), value, limit, rule};
}

Status errno_status(int err, const std::string& path) {
  if (err == ENOENT || err == ENOTDIR) return path_fail(Code::kENOENT, Reason::kFileNotFound, path);
  if (err == EACCES || err == EPERM) return path_fail(Code::kEACCES, Reason::kFileNoAccess, path);
  if (err == ENOMEM) return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  return path_fail(Code::kEINVAL, Reason::kFileIo, path, err);
}

const char* kind_of(mode_t m) {
  if (S_ISLNK(m)) return "a symbolic link";
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO";
  if (S_ISCHR(m) || S_ISBLK(m)) return "a device";
  if (S_ISSOCK(m)) return "a socket";
  return "not a regular file";
}

// Opens a file to read without ever waiting on it (a FIFO opened for reading would block until
// a writer came): non-blocking open, then only a regular file is accepted.
Status open_input(const std::string& path, int* fd_out, uint64_t* size) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return errno_status(errno, path);
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    return errno_status(err, path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    return path_fail(Code::kEINVAL, Reason::kNotRegularFile, path, 0, 0, kind_of(st.st_mode));
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags >= 0) (void)::fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
  *fd_out = fd;
  *size = uint64_t(st.st_size);
  return Status::Ok();
}

// Reads exactly n bytes (or fewer at the end of the file: *got says how many).
Status read_full(int fd, void* data, size_t n, const std::string& path, size_t* got) {
  size_t done = 0;
  auto* p = static_cast<unsigned char*>(data);
  while (done < n) {
    const ssize_t r = ::read(fd, p + done, n - done);
    if (r < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, path);
    }
    if (r == 0) break;
    done += size_t(r);
  }
  *got = done;
  return Status::Ok();
}

void to_host_order(Record* r, size_t n) {
  if constexpr (std::endian::native == std::endian::big) {
    for (size_t i = 0; i < n; ++i)
      for (uint32_t& w : r[i].w) w = __builtin_bswap32(w);
  } else {
    (void)r;
    (void)n;
  }
}

// Lines of a text file, read in blocks.
class LineReader {
 public:
  LineReader(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  // The next line (without its newline) into *line; false at the end.
  Status next(std::string* line, bool* got) {
    line->clear();
    for (;;) {
      if (pos_ < len_) {
        const char* start = buf_.data() + pos_;
        const void* nl = std::memchr(start, '\n', len_ - pos_);
        if (nl != nullptr) {
          const size_t k = static_cast<const char*>(nl) - start;
          line->append(start, k);
          pos_ += k + 1;
          *got = true;
          return Status::Ok();
        }
        line->append(start, len_ - pos_);
        pos_ = len_;
      }
      if (eof_) {
        *got = !line->empty();
        return Status::Ok();
      }
      buf_.resize(kIoBytes);
      size_t n = 0;
      if (Status st = read_full(fd_, buf_.data(), buf_.size(), path_, &n); !st.ok()) return st;
      len_ = n;
      pos_ = 0;
      bytes_ += n;
      if (n == 0) eof_ = true;
    }
  }
  // The bytes read from the file so far.
  uint64_t bytes() const { return bytes_; }

 private:
  int fd_;
  std::string path_;
  std::string buf_;
  uint64_t bytes_ = 0;
  size_t pos_ = 0, len_ = 0;
  bool eof_ = false;
};

bool blank_or_comment(const std::string& line) {
  for (char c : line) {
    if (c == '#') return true;
    if (c != ' ' && c != '\t' && c != '\r') return false;
  }
  return true;
}

// Feeds a text file's ops to `sink(records, n)` after its header; *header gets the header line.
template <typename Sink>
Status read_text(int fd, const std::string& path, Header* header, const Sink& sink, uint64_t* bytes) {
  const char* source = intern_source(path);
  LineReader lines(fd, path);
  std::string line;
  bool got = false, have_header = false;
  uint64_t line_no = 0, expanded = 0;  // list entries the lines so far expanded
  TextOp op;
  std::vector<Record> recs;
  for (;;) {
    if (Status st = lines.next(&line, &got); !st.ok()) return st;
    if (!got) break;
    ++line_no;
    if (blank_or_comment(line)) continue;
    if (!have_header) {
      if (Status st = parse_header_line(line, source, line_no, header); !st.ok()) return st;
      have_header = true;
      continue;
    }
    if (Status st = parse_op_line(line, source, line_no, &op, expanded); !st.ok()) return st;
    expanded += op.entries.size();
    recs.clear();
    recs.push_back(op.op);
    append_data(tag_of(op.op), op.entries.data(), op.entries.size(), &recs);
    if (Status st = sink(recs.data(), recs.size()); !st.ok()) return st;
  }
  if (!have_header)
    return Status{Code::kEINVAL, Reason::kOpsText, source, int64_t(line_no), 0,
                  "the file has no header line (pkops 1 pages=N ...)"};
  *bytes = lines.bytes();
  return Status::Ok();
}

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

bool is_text_path(const std::string& path) { return path.size() >= 4 && path.ends_with(".txt"); }

// ---- reading -----------------------------------------------------------------------------------

Status read_op_stream_into(const std::string& path, OpStream* out, const std::atomic<bool>* stop);

OpReader::~OpReader() {
  if (fd_ >= 0) ::close(fd_);
}

Status OpReader::open(const std::string& path) {
  source_ = intern_source(path);
  uint64_t size = 0;
  if (Status st = open_input(path, &fd_, &size); !st.ok()) return st;
  uint8_t head[kHeaderBytes];
  size_t got = 0;
  if (Status st = read_full(fd_, head, sizeof head, path, &got); !st.ok()) return st;
  bytes_ = got;
  if (Status st = decode_header(head, got, source_, &header_); !st.ok()) return st;
  const uint64_t want = stream_bytes(header_);
  if (size < want) return Status{Code::kEINVAL, Reason::kOpsTruncated, source_, int64_t(size), int64_t(want)};
  if (size > want) return Status{Code::kEINVAL, Reason::kOpsTrailing, source_, int64_t(size), int64_t(want)};
  framing_ = std::make_unique<FramingChecker>(source_, IdRules{}, header_.version);
  return Status::Ok();
}

Status OpReader::next(std::vector<Record>* chunk, size_t max) {
  const uint64_t n = std::min<uint64_t>(max, header_.records - read_);
  chunk->resize(n);
  if (n == 0) return Status::Ok();
  size_t got = 0;
  if (Status st = read_full(fd_, chunk->data(), n * kRecordBytes, source_, &got); !st.ok()) return st;
  if (got != n * kRecordBytes)  // the file shrank while we read it
    return Status{Code::kEINVAL, Reason::kOpsTruncated, source_,
                  int64_t(kHeaderBytes + read_ * kRecordBytes + got), int64_t(stream_bytes(header_))};
  bytes_ += got;
  sum_.add_records(chunk->data(), n);  // the file's bytes, before any byte swap
  to_host_order(chunk->data(), n);
  read_ += n;
  if (Status st = framing_->feed(chunk->data(), n); !st.ok()) return corrupt_or(std::move(st));
  return Status::Ok();
}

Status OpReader::corrupt_or(Status malformed) {
  // The rest of the body, summed and dropped: a body whose checksum fails is corrupt, and
  // that is the refusal to report, not the first record it garbled into a malformed one.
  std::vector<Record> rest(std::min<uint64_t>(header_.records - read_, uint64_t{1} << 16));
  while (read_ < header_.records) {
    const uint64_t n = std::min<uint64_t>(rest.size(), header_.records - read_);
    size_t got = 0;
    if (!read_full(fd_, rest.data(), n * kRecordBytes, source_, &got).ok() || got != n * kRecordBytes)
      return malformed;  // unreadable now: the refusal we have stands
    sum_.add_records(rest.data(), n);
    read_ += n;
  }
  if (sum_.value() != header_.body_checksum)
    return Status{Code::kEINVAL, Reason::kOpsChecksum, source_, 0, 0, "body"};
  return malformed;
}

Status OpReader::finish() {
  if (sum_.value() != header_.body_checksum)
    return Status{Code::kEINVAL, Reason::kOpsChecksum, source_, 0, 0, "body"};
  if (Status st = framing_->finish(); !st.ok()) return st;
  const Framing& f = framing_->framing();
  if (f.ops != header_.ops)
    return Status{Code::kEINVAL, Reason::kOpsBadHeader, source_, int64_t(header_.ops), 0,
                  "ops does not match the op records in the body"};
  if (f.max_tag >= header_.threads)
    return Status{Code::kEINVAL, Reason::kOpsBadHeader, source_, int64_t(header_.threads), 0,
                  "threads is not above every record's tag"};
  return Status::Ok();
}

Status read_op_stream(const std::string& path, OpStream* out, const std::atomic<bool>* stop) {
  Status st = read_op_stream_into(path, out, stop);
  if (!st.ok()) *out = OpStream{};  // nothing half-read is left behind
  return st;
}

Status read_op_stream_into(const std::string& path, OpStream* out, const std::atomic<bool>* stop) {
  *out = OpStream{};
  out->source = path;
  // relaxed: an advisory request, polled.
  const auto stopped = [stop] { return stop != nullptr && stop->load(std::memory_order_relaxed); };
  const Status stop_status{Code::kEINVAL, Reason::kOpsStopped, "reading the stream"};
  try {
    if (is_text_path(path)) {
      Fd fd;
      uint64_t size = 0;
      if (Status st = open_input(path, &fd.fd, &size); !st.ok()) return st;
      const char* source = intern_source(path);
      FramingChecker checker(source, IdRules{});
      Status st = read_text(fd.fd, path, &out->header, [&](const Record* r, size_t n) {
        if (stopped()) return stop_status;
        checker.set_version(out->header.version);  // the header line comes before any op
        if (Status s = checker.feed(r, n); !s.ok()) return s;
        out->records.insert(out->records.end(), r, r + n);
        return Status::Ok();
      }, &out->bytes);
      if (!st.ok()) return st;
      if (Status s = checker.finish(); !s.ok()) return s;
      out->framing = checker.framing();
      out->header.records = out->records.size();
      out->header.ops = out->framing.ops;
      // A stated `threads=` is checked as a binary header's is; without one, one per tag.
      if (out->header.threads_stated && out->framing.max_tag >= out->header.threads)
        return Status{Code::kEINVAL, Reason::kOpsBadHeader, intern_source(path), int64_t(out->header.threads), 0,
                      "threads is not above every record's tag"};
      out->header.threads = std::max(out->header.threads, out->framing.max_tag + 1);
      return Status::Ok();
    }
    OpReader reader;
    if (Status st = reader.open(path); !st.ok()) return st;
    // The length matched the header: now the records are worth their memory.
    std::vector<Record> chunk;
    out->records.reserve(reader.header().records);
    for (;;) {
      if (stopped()) return stop_status;
      if (Status st = reader.next(&chunk, size_t{1} << 18); !st.ok()) return st;
      if (chunk.empty()) break;
      out->records.insert(out->records.end(), chunk.begin(), chunk.end());
    }
    if (Status st = reader.finish(); !st.ok()) return st;
    out->header = reader.header();
    out->bytes = reader.bytes();
    // The framing of the whole stream, checked again over the records now held (read once,
    // from memory pinlab owns: nothing can change them between the check and a replay).
    FramingChecker checker(intern_source(path), IdRules{}, out->header.version);
    if (Status st = checker.feed(out->records.data(), out->records.size()); !st.ok()) return st;
    out->framing = checker.framing();
    return Status::Ok();
  } catch (const std::bad_alloc&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  } catch (const std::length_error&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  }
}

// ---- writing -----------------------------------------------------------------------------------

namespace {

// The longest name of one path component (NAME_MAX on Linux's file systems).
constexpr size_t kNameMax = 255;

// An output path's folder part, up to and with its last '/' ("" for a bare name): what a
// sibling's name (a temporary) is appended to.
std::string folder_prefix(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash + 1);
}

// The folder itself, as stat(2) and access(2) take it: "." for a bare name, "/" at the root.
std::string folder_of(const std::string& path) {
  const std::string prefix = folder_prefix(path);
  if (prefix.empty()) return ".";
  return prefix.size() == 1 ? prefix : prefix.substr(0, prefix.size() - 1);
}

}  // namespace

Status check_op_output(const std::string& path) {
  // "" would write a temporary named ".tmp-..." here and fail only at the rename, after the work.
  if (path.empty()) return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "an empty path names no file");
  if (path.back() == '/') return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "it names a folder, not a file");
  if (path.size() - folder_prefix(path).size() > kNameMax)
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "its name is longer than 255 bytes");
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0,
                     S_ISLNK(st.st_mode) ? "it is a symbolic link" : S_ISDIR(st.st_mode) ? "it is a directory"
                     : S_ISFIFO(st.st_mode) ? "it is a FIFO" : "it is not a regular file");
  const std::string dir = folder_of(path);
  struct stat ds {};
  if (::stat(dir.c_str(), &ds) != 0 || !S_ISDIR(ds.st_mode))
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "its folder does not exist");
  if (::access(dir.c_str(), W_OK) != 0)
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "its folder is not writable");
  return Status::Ok();
}

OpWriter::~OpWriter() { abort(); }

void OpWriter::abort() {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
  if (!tmp_.empty()) {
    ::unlink(tmp_.c_str());
    tmp_.clear();
  }
}

Status OpWriter::open(const std::string& path, const Header& header) {
  abort();
  if (Status st = check_op_output(path); !st.ok()) return st;
  path_ = path;
  source_ = intern_source(path);
  text_ = is_text_path(path);
  header_ = header;
  header_.records = header_.ops = header_.body_checksum = 0;
  // The page-array fields are checked now: a file that could not be read back is not begun.
  uint8_t probe[kHeaderBytes];
  if (Status st = encode_header(header_, source_, probe); !st.ok()) return st;
  std::random_device rd;
  const std::string dir = folder_prefix(path);
  for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
    char suffix[48];
    std::snprintf(suffix, sizeof suffix, ".tmp-%d-%08x", int(::getpid()), unsigned(rd()));
    tmp_ = path + suffix;
    // A legal name near NAME_MAX has no room for the suffix: a short name in the same folder.
    if (tmp_.size() - dir.size() > kNameMax) tmp_ = dir + ".pkops" + suffix;
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (fd_ < 0 && errno != EEXIST && errno != ELOOP) {
      // The folder passed access(2) but takes no file (/proc, a read-only mount as root).
      const int err = errno;
      tmp_.clear();
      if (err == ENAMETOOLONG) return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "the path is too long");
      return err == EACCES || err == ENOENT || err == EROFS || err == EPERM
                 ? path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "no file can be created in its folder")
                 : errno_status(err, path);
    }
  }
  if (fd_ < 0) {
    tmp_.clear();
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path, 0, 0, "no temporary name was free");
  }
  // The records as their source's version frames them. They are written in the oldest
  // version that holds their ops (written_version: 3, or 4 with an unpin-lists), which frames
  // every older version's records the same; known at finish(), so the header says 3 until then.
  checker_ = std::make_unique<FramingChecker>(source_, IdRules{}, header.version);
  header_.version = kOldestWrittenVersion;
  records_ = 0;
  bytes_ = 0;
  sum_ = Checksum{};
  pending_left_ = 0;
  buf_.clear();
  buf_.reserve(kIoBytes + 4096);
  if (text_) {
    const std::string comment = "# pinlab op stream, text form (see README: Op streams)\n";
    const std::string head = comment + format_header_line(header_) + "\n";
    text_version_at_ = comment.size() + std::string_view("pkops ").size();  // its one digit
    buf_.insert(buf_.end(), head.begin(), head.end());
    return Status::Ok();
  }
  buf_.resize(kHeaderBytes, 0);  // the header is written by finish()
  return Status::Ok();
}

Status OpWriter::write_all(const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno_status(errno, path_);
    }
    p += w;
    n -= size_t(w);
    bytes_ += uint64_t(w);
  }
  return Status::Ok();
}

Status OpWriter::flush() {
  if (buf_.empty()) return Status::Ok();
  Status st = write_all(buf_.data(), buf_.size());
  buf_.clear();
  return st;
}

Status OpWriter::append_text(const Record& r) {
  if (pending_left_ > 0) {  // a data record of the pending op (framing checked it)
    const uint32_t k = flags_of(r);
    for (uint32_t j = 0; j < k; ++j) pending_entries_.push_back(r.w[1 + j]);
    --pending_left_;
  } else {
    pending_ = r;
    pending_entries_.clear();
    pending_left_ = data_records_for(entries_of(r));
  }
  if (pending_left_ > 0) return Status::Ok();
  std::string line;
  format_op_line(pending_, pending_entries_.data(), pending_entries_.size(), &line);
  line.push_back('\n');
  buf_.insert(buf_.end(), line.begin(), line.end());
  return Status::Ok();
}

Status OpWriter::append(const Record* r, size_t n) {
  if (fd_ < 0) return path_fail(Code::kEINVAL, Reason::kOutputPath, path_, 0, 0, "the writer is not open");
  try {
    for (size_t i = 0; i < n; ++i) {
      // One record at a time from the caller's memory into ours: checked and written from
      // the same copy.
      const Record rec = r[i];
      if (Status st = checker_->feed(rec); !st.ok()) return st;
      ++records_;
      if (text_) {
        if (Status st = append_text(rec); !st.ok()) return st;
      } else {
        Record le = rec;
        if constexpr (std::endian::native == std::endian::big)
          for (uint32_t& w : le.w) w = __builtin_bswap32(w);
        sum_.add_records(&le, 1);
        const auto* bytes = reinterpret_cast<const unsigned char*>(&le);
        buf_.insert(buf_.end(), bytes, bytes + kRecordBytes);
      }
      if (buf_.size() >= kIoBytes)
        if (Status st = flush(); !st.ok()) return st;
    }
  } catch (const std::bad_alloc&) {
    return Status::Fail(Code::kENOMEM, Reason::kNoMemory, 0);
  }
  return Status::Ok();
}

Status OpWriter::finish() {
  if (fd_ < 0) return path_fail(Code::kEINVAL, Reason::kOutputPath, path_, 0, 0, "the writer is not open");
  if (Status st = checker_->finish(); !st.ok()) return st;
  const Framing& f = checker_->framing();
  if ((text_ || header_.threads_stated) && f.max_tag >= header_.threads)
    return Status{Code::kEINVAL, Reason::kOpsBadHeader, source_, int64_t(header_.threads), 0,
                  "threads is not above every record's tag"};
  if (Status st = flush(); !st.ok()) return st;
  header_.version = written_version(f);
  if (text_ && header_.version != kOldestWrittenVersion) {
    const char digit = char('0' + header_.version);
    if (::pwrite(fd_, &digit, 1, off_t(text_version_at_)) != 1) return errno_status(errno, path_);
  }
  if (!text_) {
    header_.records = records_;
    header_.ops = f.ops;
    // The stream's threads as the header says (a text stream's stated value is kept, so a
    // conversion round-trips), and never below one per tag.
    header_.threads = std::max(header_.threads, f.max_tag + 1);
    header_.body_checksum = sum_.value();
    uint8_t head[kHeaderBytes];
    if (Status st = encode_header(header_, source_, head); !st.ok()) return st;
    if (::pwrite(fd_, head, sizeof head, 0) != ssize_t(sizeof head)) return errno_status(errno, path_);
  }
  if (::close(fd_) != 0) {
    fd_ = -1;
    return errno_status(errno, path_);
  }
  fd_ = -1;
  // Never rename over something that became a link or a folder meanwhile.
  struct stat st {};
  if (::lstat(path_.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
    return path_fail(Code::kEINVAL, Reason::kOutputPath, path_, 0, 0, "it is not a regular file");
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) return errno_status(errno, path_);
  tmp_.clear();
  return Status::Ok();
}

// ---- conversion --------------------------------------------------------------------------------

Status convert_op_stream(const std::string& in, const std::string& out,
                         const std::atomic<bool>* stop, uint64_t* records) {
  OpWriter writer;
  auto stopped = [&] { return stop != nullptr && stop->load(std::memory_order_relaxed); };
  const Status stop_status{Code::kEINVAL, Reason::kOpsStopped, "the conversion"};
  if (!is_text_path(in)) {
    OpReader reader;
    if (Status st = reader.open(in); !st.ok()) return st;
    if (Status st = writer.open(out, reader.header()); !st.ok()) return st;
    std::vector<Record> chunk;
    for (;;) {
      if (stopped()) return stop_status;
      if (Status st = reader.next(&chunk, size_t{1} << 16); !st.ok()) return st;
      if (chunk.empty()) break;
      if (Status st = writer.append(chunk.data(), chunk.size()); !st.ok()) return st;
    }
    // The input's checksum before the output takes its name.
    if (Status st = reader.finish(); !st.ok()) return st;
    *records = writer.records();
    return writer.finish();
  }
  if (is_text_path(out)) {
    // Text to text: its header line must name the tags used, known only at the end of the
    // input, so the input is read whole first (text streams are for people: small).
    OpStream stream;
    if (Status st = read_op_stream(in, &stream, stop); !st.ok()) return st;
    if (Status st = writer.open(out, stream.header); !st.ok()) return st;
    if (Status st = writer.append(stream.records.data(), stream.records.size()); !st.ok()) return st;
    *records = stream.records.size();
    return writer.finish();
  }
  Fd fd;
  uint64_t size = 0;
  if (Status st = open_input(in, &fd.fd, &size); !st.ok()) return st;
  // A text input's header comes first; the writer opens once it is known (the binary writer
  // computes threads from the tags it sees).
  bool opened = false;
  Header header;
  uint64_t count = 0, text_bytes = 0;
  Status st = read_text(fd.fd, in, &header, [&](const Record* r, size_t n) {
    if (stopped()) return stop_status;
    if (!opened) {
      if (Status s = writer.open(out, header); !s.ok()) return s;
      opened = true;
    }
    count += n;
    return writer.append(r, n);
  }, &text_bytes);
  if (!st.ok()) return st;
  if (!opened)
    if (Status s = writer.open(out, header); !s.ok()) return s;
  *records = count;
  return writer.finish();
}

}  // namespace pinlab::ops
