package dev.quicedge.demo

import java.io.File
import java.io.FileOutputStream
import java.io.IOException
import java.nio.channels.FileChannel
import java.nio.file.Files
import java.nio.file.StandardOpenOption

/**
 * Crash-safe writes, as quic_edge/atomic.py does them: a temporary file beside the target, fsync, rename,
 * fsync the folder. A process killed at any point leaves either the old file or the new one.
 */
object Atomic {
    fun writeBytes(target: File, data: ByteArray): File {
        val folder = target.absoluteFile.parentFile
        if (!folder.isDirectory && !folder.mkdirs()) throw IOException("cannot create $folder")
        val tmp = File(folder, ".${target.name}.tmp-${randomToken()}")
        try {
            FileOutputStream(tmp).use { out ->
                out.write(data)
                out.flush()
                out.fd.sync()
            }
            rename(tmp, target)
        } finally {
            tmp.delete()  // gone already when the rename succeeded
        }
        fsyncDir(folder)
        return target
    }

    /** Rename within one folder, replacing `to` if it is a file (atomic on POSIX file systems). */
    fun rename(from: File, to: File) {
        if (!from.renameTo(to)) throw IOException("cannot rename $from to $to")
    }

    fun fsyncFile(file: File) {
        FileChannel.open(file.toPath(), StandardOpenOption.READ).use { it.force(true) }
    }

    /** Make a rename or a new file in `folder` durable (a no-op where the platform cannot open folders). */
    fun fsyncDir(folder: File) {
        try {
            FileChannel.open(folder.toPath(), StandardOpenOption.READ).use { it.force(true) }
        } catch (err: IOException) {
            // Some file systems refuse to open a directory for reading; the rename itself is still atomic.
        }
    }

    fun randomToken(): String = java.lang.Long.toHexString(java.util.Random().nextLong() and Long.MAX_VALUE)

    /** Delete a folder and its contents; a symbolic link is removed, never followed. */
    fun deleteTree(folder: File) {
        if (!Files.isSymbolicLink(folder.toPath())) {
            folder.listFiles()?.forEach { if (it.isDirectory) deleteTree(it) else it.delete() }
        }
        folder.delete()
    }
}
