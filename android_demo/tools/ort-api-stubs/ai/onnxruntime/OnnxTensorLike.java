// Declarations only (see OrtException.java).
package ai.onnxruntime;

public abstract class OnnxTensorLike implements OnnxValue {
}
