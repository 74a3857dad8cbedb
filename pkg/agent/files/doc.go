// Package files gives an agent's file transfers access to the directory
// trees its configuration allows, and to nothing else.
//
// [Roots] is built from absolute directory paths (the agent's repeatable
// --files-root); with none, every path is refused. A path given to it must
// be absolute; it is cleaned lexically first, so "/srv/share/../etc" is
// "/srv/etc", and must then lie under a root as written. Its symbolic links
// are resolved (filepath.EvalSymlinks on the longest existing prefix) and
// the result must lie under a root again: a link to anywhere under any root
// is followed, a link that leads outside every root is refused, and a
// dangling link is reported as not found. The file is then opened through
// an [os.Root] of the root that contains the resolved path, so that a
// directory swapped for a symbolic link after the check can at most lead
// elsewhere inside that same root (os.Root refuses links that escape it,
// and absolute ones). Reads refuse a regular file with more than one hard
// link, checked on the open file: a hard link may name a file outside every
// root. Bind mounts, /proc and other mount points under a root are not
// detected; keep roots free of them. Non-regular files (devices, FIFOs,
// sockets) are neither read nor replaced.
//
// Transfers stream: [Roots.OpenRead] returns a reader positioned at an
// offset that computes the sha-256 of the whole file (it hashes the prefix
// before the offset first); [Roots.CreateWrite] writes to a temporary file
// beside the destination, named ".<name>.cm-upload-<id>" where <id> is
// derived from the declared size and digest, so that after an interruption
// (even of the agent) the same upload continues from the temporary file's
// length, and [Writer.Commit] verifies size and digest, syncs, sets the mode
// and renames it over the destination, so that readers see the old file or
// the new one, never a part. One upload per destination at a time; at most
// [Config.MaxTransfers] transfers of either kind at once.
//
// Errors that describe a refusal are of type [*Error] or
// [*OffsetMismatchError] and carry a stable Code for the protocol.
package files
