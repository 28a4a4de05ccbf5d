package dev.quicedge.demo

import android.content.Context
import dev.quicedge.demo.BundleFields as F
import java.io.File
import java.io.FileNotFoundException
import java.io.FileOutputStream

/**
 * Copies the bundle shipped in the app's assets (assets/bundle/) to internal storage, where ONNX Runtime
 * can open its files by path. The copy goes to a staging folder first and is renamed into place, so a
 * kill during the copy never leaves half a bundle; Bundle.open then checks every file's sha256.
 */
object BundleInstaller {
    const val ASSET_DIR = "bundle"

    /** The installed bundle folder; `force` copies again even when the installed manifest matches. */
    fun install(context: Context, force: Boolean = false): File {
        val target = File(context.filesDir, ASSET_DIR)
        val manifest = try {
            context.assets.open("$ASSET_DIR/${F.MANIFEST}").use { it.readBytes() }
        } catch (err: FileNotFoundException) {
            throw BundleError("the app has no bundle: export one and copy it to app/src/main/assets/$ASSET_DIR (README.md)")
        }
        val installed = File(target, F.MANIFEST)
        if (!force && installed.isFile && installed.readBytes().contentEquals(manifest)) return target

        val staging = File(context.filesDir, ".bundle-staging-${Atomic.randomToken()}")
        val old = File(context.filesDir, ".bundle-old-${Atomic.randomToken()}")
        try {
            staging.mkdirs()
            for (name in context.assets.list(ASSET_DIR) ?: emptyArray()) {
                val file = File(staging, name)
                context.assets.open("$ASSET_DIR/$name").use { input ->
                    FileOutputStream(file).use { output ->
                        input.copyTo(output, 1 shl 20)
                        output.fd.sync()
                    }
                }
            }
            Atomic.fsyncDir(staging)
            if (target.exists()) Atomic.rename(target, old)
            Atomic.rename(staging, target)
            Atomic.fsyncDir(context.filesDir)
        } finally {
            Atomic.deleteTree(staging)  // nothing left when the rename succeeded
            Atomic.deleteTree(old)
        }
        return target
    }
}
