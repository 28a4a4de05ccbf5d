// Declarations only (see OrtException.java).
package ai.onnxruntime;

import java.nio.file.Path;
import java.util.Map;

public final class OrtTrainingSession implements AutoCloseable {
    public OrtSession.Result trainStep(Map<String, ? extends OnnxTensorLike> inputs) throws OrtException {
        throw new UnsupportedOperationException("declaration only");
    }

    public OrtSession.Result evalStep(Map<String, ? extends OnnxTensorLike> inputs) throws OrtException {
        throw new UnsupportedOperationException("declaration only");
    }

    public void lazyResetGrad() throws OrtException { }

    public void setLearningRate(float learningRate) throws OrtException { }

    public float getLearningRate() throws OrtException { throw new UnsupportedOperationException("declaration only"); }

    public void optimizerStep() throws OrtException { }

    public void saveCheckpoint(Path outputPath, boolean saveOptimizer) throws OrtException { }

    @Override
    public void close() { }
}
