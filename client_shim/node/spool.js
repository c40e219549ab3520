'use strict';
// This process's spool file: events the daemon could not take, kept for it on disk, in the
// same form and folder as the Python shim's. Written as `.<pid>-<random>.tmp` and renamed
// to `<pid>-<random>.ndjson` when complete, so a reader never sees half a file; 0600 in a
// 0700 `<data dir>/spool/`. Bounded per file and for the folder (measured when writing).
//
// The calls are synchronous, and made only from callbacks, timers and the exit handler,
// never from track(): a few hundred kilobytes reach the page cache in about a millisecond.

const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { privateDirProblemSync, pyPath } = require('./paths.js');

const SPOOL_FILE_BYTES = 8 * 1024 * 1024;
const SPOOL_FOLDER_BYTES = 64 * 1024 * 1024;
const C = fs.constants;
const CREATE = C.O_WRONLY | C.O_CREAT | C.O_EXCL | (C.O_NOFOLLOW || 0);

// `dir` as this user's own 0700 folder, made if missing; throws otherwise. Folders that
// already exist are never changed — not the spool folder, not its parent, which may be
// anything a caller named (even /tmp). A spool folder that exists but is not private is
// not used. Only a folder made here is set to 0700 (whatever the umask).
function makeSpoolDir(dir) {
  fs.mkdirSync(path.dirname(dir), { recursive: true, mode: 0o700 }); // the data dir, as the daemon makes it
  let made = false;
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
    made = true;
  } catch (error) {
    if (error.code !== 'EEXIST') throw error;
  }
  if (made) fs.chmodSync(dir, 0o700);
  const problem = privateDirProblemSync(dir);
  if (problem !== null) throw new Error(`${dir} ${problem}`);
}

class Spool {
  constructor(directory) {
    this.directory = directory;
    this.sealed = 0; // files renamed into place by this process
    this.fd = null;
    this.size = 0;
    this.temporary = null;
    this.final = null;
  }

  get isOpen() {
    return this.fd !== null;
  }

  /**
   * Append as many of `lines` (strings, each ending in a newline) as the caps allow, whole
   * lines only. Returns [written, reason for the rest or null].
   */
  write(lines) {
    let written = 0;
    try {
      if (this.fd === null) this.open();
      let used = this.folderBytes();
      while (written < lines.length) {
        const fileRoom = SPOOL_FILE_BYTES - this.size;
        const folderRoom = SPOOL_FOLDER_BYTES - used;
        const room = Math.min(fileRoom, folderRoom);
        let count = 0;
        let size = 0;
        const parts = [];
        while (written + count < lines.length) {
          const bytes = Buffer.byteLength(lines[written + count]);
          if (size + bytes > room) break;
          parts.push(lines[written + count]);
          size += bytes;
          count += 1;
        }
        if (count) {
          this.append(parts.join(''));
          written += count;
          used += size;
          continue;
        }
        if (folderRoom <= fileRoom || this.size === 0) return [written, 'spool_full'];
        this.seal(); // this file is full: the next one may take the rest
        this.open();
        used = this.folderBytes();
      }
      return [written, null];
    } catch {
      return [written, 'spool_failed'];
    }
  }

  /** A line that is not an event (a drop count), past the caps: it is tiny. */
  writeControl(line) {
    try {
      if (this.fd === null) this.open();
      this.append(line);
      return true;
    } catch {
      return false;
    }
  }

  /** Rename the file into place for the daemon (an empty one is removed). */
  seal() {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    try {
      fs.closeSync(fd);
      if (this.size) {
        fs.renameSync(this.temporary, this.final);
        this.sealed += 1;
      } else {
        fs.unlinkSync(this.temporary);
      }
    } catch {
      // The folder went away: nothing more can be done for this file.
    }
  }

  /** Remove the file being written, unread (the user turned telemetry off). */
  discard() {
    const fd = this.fd;
    if (fd === null) return;
    this.fd = null;
    try {
      fs.closeSync(fd);
      fs.unlinkSync(this.temporary);
    } catch {
      // already gone
    }
  }

  open() {
    if (!this.directory) throw new Error('no data dir');
    makeSpoolDir(this.directory);
    const name = `${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
    const temporary = pyPath(this.directory, `.${name}.tmp`);
    const fd = fs.openSync(temporary, CREATE, 0o600);
    try {
      fs.fchmodSync(fd, 0o600); // whatever the umask
    } catch (error) {
      fs.closeSync(fd);
      fs.unlinkSync(temporary);
      throw error;
    }
    this.fd = fd;
    this.size = 0;
    this.temporary = temporary;
    this.final = pyPath(this.directory, `${name}.ndjson`);
  }

  append(text) {
    const data = Buffer.from(text);
    let done = 0;
    try {
      while (done < data.length) done += fs.writeSync(this.fd, data, done);
    } catch (error) {
      // A full disk may cut a line short: take the file back to its last whole line.
      fs.ftruncateSync(this.fd, this.size);
      throw error;
    }
    this.size += done;
  }

  folderBytes() {
    let total = 0;
    for (const entry of fs.readdirSync(this.directory, { withFileTypes: true })) {
      if (!entry.isFile()) continue;
      try {
        total += fs.lstatSync(pyPath(this.directory, entry.name)).size;
      } catch {
        // removed by the daemon meanwhile
      }
    }
    return total;
  }
}

module.exports = { Spool, SPOOL_FILE_BYTES, SPOOL_FOLDER_BYTES };
