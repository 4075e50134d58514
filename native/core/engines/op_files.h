// Op stream files: .pkops (binary, op_format.h) and .pkops.txt (the text form), read into
// memory pinlab owns or streamed in chunks, and written through a temporary file renamed into
// place, so a stream that fails (or is stopped) halfway never appears under its name.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/status.h"
#include "engines/op_format.h"

namespace pinlab::ops {

// A whole stream in memory: the header (counts as the body has them), the records, and what
// the framing check found.
struct OpStream {
  Header header;
  std::vector<Record> records;
  Framing framing;
  std::string source;  // the path it came from
  uint64_t bytes = 0;  // the bytes read from the file and checked: the stream's size as read
};

// True for a path that names the text form (ends in ".txt": "trace.pkops.txt").
bool is_text_path(const std::string& path);

// Reads a stream (binary or text by the path's extension) into *out, checking everything
// before it returns: a binary file's header, its length against the header (before anything
// is allocated, so a small file that claims 2^40 ops costs nothing), both checksums, and the
// framing of every record; a text file line by line. ENOENT / EACCES when the file cannot be
// opened, EINVAL naming the file, record or line, ENOMEM if the records do not fit in memory.
// A `stop` request (Ctrl-C) is seen between lines and chunks: EINVAL kOpsStopped, nothing kept.
Status read_op_stream(const std::string& path, OpStream* out, const std::atomic<bool>* stop = nullptr);

// Reads a binary stream chunk by chunk (for conversions of streams larger than memory): the
// header and length are checked by open(); next() checks each record's framing; finish()
// checks the body checksum, so a consumer must not commit anything before finish() is ok.
class OpReader {
 public:
  OpReader() = default;
  ~OpReader();
  OpReader(const OpReader&) = delete;
  OpReader& operator=(const OpReader&) = delete;

  Status open(const std::string& path);
  const Header& header() const { return header_; }
  // Up to `max` records into *chunk (replaced); an empty chunk at the end.
  Status next(std::vector<Record>* chunk, size_t max);
  Status finish();
  // The bytes read from the file so far (header and records): after finish(), the stream's size.
  uint64_t bytes() const { return bytes_; }

 private:
  // A framing refusal of the body read so far: the checksum refusal instead when the whole
  // body's checksum fails (the rest is read to tell), else `malformed`.
  Status corrupt_or(Status malformed);

  int fd_ = -1;
  const char* source_ = "";
  Header header_;
  uint64_t read_ = 0;  // records read so far
  uint64_t bytes_ = 0;
  Checksum sum_;
  std::unique_ptr<FramingChecker> framing_;
};

// Writes a stream to `path` (binary or text by its extension): records are checked (framing)
// and buffered as they come; finish() writes the header (the version its ops need, counts,
// threads, checksums) and renames the temporary into place. The target must be absent or a
// regular file (a link, FIFO or directory there is refused), and its folder writable. Without
// finish(), the temporary is removed (abort, or the destructor).
class OpWriter {
 public:
  OpWriter() = default;
  ~OpWriter();
  OpWriter(const OpWriter&) = delete;
  OpWriter& operator=(const OpWriter&) = delete;

  // `header` gives the page-array fields; its counts, checksum and threads are computed.
  // A text stream's header line names `header.threads` (at least the tags used: checked by
  // finish()).
  Status open(const std::string& path, const Header& header);
  Status append(const Record* r, size_t n);
  Status finish();
  void abort();
  uint64_t records() const { return records_; }
  uint64_t ops() const { return checker_ ? checker_->framing().ops : 0; }
  // The bytes written to the file so far: after finish(), its size.
  uint64_t bytes() const { return bytes_; }

 private:
  Status flush();
  Status write_all(const void* data, size_t n);
  Status append_text(const Record& r);

  int fd_ = -1;
  bool text_ = false;
  std::string path_, tmp_;
  const char* source_ = "";
  Header header_;
  uint64_t records_ = 0;
  uint64_t bytes_ = 0;
  Checksum sum_;
  std::unique_ptr<FramingChecker> checker_;
  std::vector<unsigned char> buf_;
  // Text: the op whose data records are still coming, and its entries so far.
  Record pending_{};
  std::vector<uint32_t> pending_entries_;
  uint64_t pending_left_ = 0;
  // Text: the file offset of the header line's version digit (finish() sets it to the
  // version the ops need).
  size_t text_version_at_ = 0;
};

// Whether `path` could be written by OpWriter (EINVAL naming why not), before a long run.
Status check_op_output(const std::string& path);

// Converts a stream between the two forms (by the paths' extensions), streaming: a binary
// input's checksum is checked before the output is renamed into place.
Status convert_op_stream(const std::string& in, const std::string& out,
                         const std::atomic<bool>* stop, uint64_t* records);

}  // namespace pinlab::ops
