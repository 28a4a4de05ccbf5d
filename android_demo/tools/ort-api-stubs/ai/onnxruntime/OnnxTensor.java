// Declarations only (see OrtException.java).
package ai.onnxruntime;

import java.nio.FloatBuffer;
import java.nio.LongBuffer;

public class OnnxTensor extends OnnxTensorLike {
    public static OnnxTensor createTensor(OrtEnvironment env, LongBuffer data, long[] shape) throws OrtException {
        throw new UnsupportedOperationException("declaration only");
    }

    public FloatBuffer getFloatBuffer() { throw new UnsupportedOperationException("declaration only"); }

    @Override
    public Object getValue() throws OrtException { throw new UnsupportedOperationException("declaration only"); }

    @Override
    public void close() { }
}
