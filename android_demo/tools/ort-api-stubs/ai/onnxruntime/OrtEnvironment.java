// Declarations only (see OrtException.java).
package ai.onnxruntime;

public final class OrtEnvironment implements AutoCloseable {
    public static OrtEnvironment getEnvironment() { throw new UnsupportedOperationException("declaration only"); }

    public OrtTrainingSession createTrainingSession(
            String checkpointPath, String trainPath, String evalPath, String optimizerPath) throws OrtException {
        throw new UnsupportedOperationException("declaration only");
    }

    public OrtTrainingSession createTrainingSession(
            String checkpointPath, String trainPath, String evalPath, String optimizerPath,
            OrtSession.SessionOptions options) throws OrtException {
        throw new UnsupportedOperationException("declaration only");
    }

    @Override
    public void close() { }
}
