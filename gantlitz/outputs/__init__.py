"""Every file the package writes goes through here: atomic writes, the overwrite rule, JSON, PIL images, GIFs.

Rules, the same for every command:
- a write goes to a temporary file in the destination folder, is flushed and fsynced, checked (the size
  its encoder reports, or a decoder's look at it) and only then renamed into place; a failed write
  (a full disk, an I/O error, an encoder error) is an `OutputError` naming the file and leaves no
  temporary file (a killed writer leaves only a `.NAME.*.tmp*` file that `remove_temporaries` clears);
- ownership by record: inside `writing(command)` every file written is recorded (size and modification
  time) in its folder's `.gantlitz-record.json`; `--overwrite` replaces or removes only files that
  record names as that command's and that are unchanged since; anything else is kept and listed in a
  warning, and a folder without a record of the command is never emptied;
- an input (symlinks resolved) is never inside or equal to an output the command would replace;
- a path that can not be written becomes an `OutputError` naming it (no traceback), checked before the
  long work starts (`refuse_existing`, `check_output_dir`).

Modules (the names below are this package's API, importable from `gantlitz.outputs`):
- `files`       folders (make_dirs), names beside a file (sibling), the temporary file and its write, fsync
                and rename under every write, temporaries cleanup (TEMP_GLOB, remove_temporaries),
                human_bytes
- `ownership`   records (writing, record, owned, has_record, RECORD_NAME) and the overwrite rule
                (refuse_existing, check_apart, check_output_dir, check_writable, contains, remove_owned,
                install_dir)
- `atomic`      the one atomic write path (atomic_path) and its writers: write_bytes, write_text,
                write_json, save_image, save_figure, write_gif (GIF_FPS)
- `locks`       FolderLock, LOCK_NAME
- `provenance`  run_info
- `mapfiles`    map-file naming and writing (OUTPUT_MAPS, FORMATS, output_paths, write_map): above
                `gantlitz.imageio`, so imported from `gantlitz.outputs.mapfiles`, never from here
Inside: files, locks ─→ ownership ─→ atomic; provenance stands alone.
"""

from .atomic import (GIF_FPS, atomic_path, save_figure, save_image, write_bytes, write_gif, write_json,
                     write_text)
from .files import TEMP_GLOB, human_bytes, make_dirs, remove_temporaries, sibling
from .locks import LOCK_NAME, FolderLock
from .ownership import (RECORD_NAME, check_apart, check_output_dir, check_writable, contains, has_record,
                        install_dir, owned, record, refuse_existing, remove_owned, writing)
from .provenance import run_info

__all__ = ["atomic_path", "write_bytes", "make_dirs", "refuse_existing", "write_json", "write_text", "save_image",
           "write_gif", "contains", "check_apart", "check_output_dir", "check_writable", "remove_owned", "install_dir",
           "remove_temporaries", "run_info", "TEMP_GLOB", "FolderLock", "LOCK_NAME", "RECORD_NAME", "writing",
           "record", "owned", "has_record", "sibling", "human_bytes", "GIF_FPS", "save_figure"]
