package dev.quicedge.demo

import java.io.File
import java.io.RandomAccessFile
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.channels.FileChannel

/** A float32 tensor: shape and values in row-major order. */
class FloatTensor(val shape: List<Long>, val data: FloatArray) {
    init {
        val count = shape.fold(1L) { a, b -> a * b }
        require(count == data.size.toLong()) { "shape $shape holds $count values, got ${data.size}" }
    }
}

/**
 * Reads the trainable parameters out of an ONNX Runtime training checkpoint file.
 *
 * ONNX Runtime's Java API (1.19) has no call that returns a parameter's values (Python has
 * CheckpointState.get_parameter, Java only saveCheckpoint), so the app saves a checkpoint and reads the
 * trained tensors from it. The file is a FlatBuffer with identifier "ODTC" and the schema of
 * onnxruntime/core/flatbuffers/schema/ort_training_checkpoint.fbs:
 *   Checkpoint { version:int32; module_state:ModuleState; optimizer_groups; property_bag }
 *   ModuleState { requires_grad_params:[Tensor]; frozen_params:[Tensor]; is_nominal_state:bool; has_external_data:bool }
 *   Tensor (ort.fbs) { name:string; doc_string:string; dims:[int64]; data_type:int32; raw_data:[uint8];
 *                      string_data:[string]; external_data_offset:int64 = -1 }
 */
object OrtCheckpointFile {
    private const val IDENTIFIER = "ODTC"
    private const val FLOAT = 1  // TensorDataType.FLOAT (ONNX numbering)

    /** The trainable (requires_grad) parameters by name, in checkpoint order. */
    fun trainableParameters(file: File): Map<String, FloatTensor> {
        val buffer = RandomAccessFile(file, "r").use { raf ->
            raf.channel.map(FileChannel.MapMode.READ_ONLY, 0, raf.length())
        }
        buffer.order(ByteOrder.LITTLE_ENDIAN)
        val fb = FlatBuffer(buffer, file.name)
        if (buffer.limit() < 8 || fb.identifier() != IDENTIFIER) {
            throw IllegalArgumentException("${file.name} is not an ONNX Runtime training checkpoint (no '$IDENTIFIER' identifier)")
        }
        val root = fb.root()
        val module = fb.table(root, 1) ?: throw IllegalArgumentException("${file.name}: the checkpoint has no module state")
        if (fb.bool(module, 2)) throw IllegalArgumentException("${file.name}: a nominal checkpoint holds no parameter values")
        if (fb.bool(module, 3)) {
            throw IllegalArgumentException("${file.name}: parameters are in an external data file, which this app does not read")
        }
        val params = LinkedHashMap<String, FloatTensor>()
        for (tensor in fb.tables(module, 0)) {
            val name = fb.string(tensor, 0) ?: throw IllegalArgumentException("${file.name}: a parameter has no name")
            val dims = fb.longs(tensor, 2)
            val type = fb.int(tensor, 3, 0)
            if (type != FLOAT) throw IllegalArgumentException("${file.name}: $name has data type $type, not float32")
            if (fb.long(tensor, 6, -1L) >= 0L) throw IllegalArgumentException("${file.name}: $name keeps its data externally")
            val raw = fb.bytes(tensor, 4) ?: throw IllegalArgumentException("${file.name}: $name has no data")
            val values = FloatArray(raw.remaining() / 4)
            raw.order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(values)
            params[name] = FloatTensor(dims, values)
        }
        return params
    }

    /** Just enough of the FlatBuffers wire format to walk tables, vectors, strings and scalars. */
    private class FlatBuffer(private val bb: ByteBuffer, private val what: String) {
        fun identifier(): String = String(ByteArray(4) { bb.get(4 + it) }, Charsets.US_ASCII)

        fun root(): Int = deref(0)

        /** Absolute position of the target of the uoffset stored at `at`. */
        private fun deref(at: Int): Int {
            val target = at + bb.getInt(at)
            if (target < 0 || target >= bb.limit()) throw IllegalArgumentException("$what: corrupt checkpoint (offset out of range)")
            return target
        }

        /** Position of field `index` inside the table at `table`, or 0 when the field is absent. */
        private fun field(table: Int, index: Int): Int {
            val vtable = table - bb.getInt(table)
            val vtableSize = bb.getShort(vtable).toInt() and 0xFFFF
            val entry = 4 + 2 * index
            if (entry >= vtableSize) return 0
            val offset = bb.getShort(vtable + entry).toInt() and 0xFFFF
            return if (offset == 0) 0 else table + offset
        }

        fun table(table: Int, index: Int): Int? {
            val at = field(table, index)
            return if (at == 0) null else deref(at)
        }

        fun bool(table: Int, index: Int): Boolean {
            val at = field(table, index)
            return at != 0 && bb.get(at).toInt() != 0
        }

        fun int(table: Int, index: Int, default: Int): Int {
            val at = field(table, index)
            return if (at == 0) default else bb.getInt(at)
        }

        fun long(table: Int, index: Int, default: Long): Long {
            val at = field(table, index)
            return if (at == 0) default else bb.getLong(at)
        }

        /** (position of the first element, element count) of a vector field, or null when absent. */
        private fun vector(table: Int, index: Int): Pair<Int, Int>? {
            val at = field(table, index)
            if (at == 0) return null
            val start = deref(at)
            return Pair(start + 4, bb.getInt(start))
        }

        fun tables(table: Int, index: Int): List<Int> {
            val (first, count) = vector(table, index) ?: return emptyList()
            return (0 until count).map { deref(first + 4 * it) }
        }

        fun longs(table: Int, index: Int): List<Long> {
            val (first, count) = vector(table, index) ?: return emptyList()
            return (0 until count).map { bb.getLong(first + 8 * it) }
        }

        fun bytes(table: Int, index: Int): ByteBuffer? {
            val (first, count) = vector(table, index) ?: return null
            if (first + count > bb.limit()) throw IllegalArgumentException("$what: corrupt checkpoint (data out of range)")
            val view = bb.duplicate()
            view.position(first)
            view.limit(first + count)
            return view.slice()
        }

        fun string(table: Int, index: Int): String? {
            val (first, count) = vector(table, index) ?: return null
            return String(ByteArray(count) { bb.get(first + it) }, Charsets.UTF_8)
        }
    }
}
