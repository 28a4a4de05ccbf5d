// Declarations only (see OrtException.java).
package ai.onnxruntime;

import java.util.Iterator;
import java.util.Map;

public class OrtSession implements AutoCloseable {
    @Override
    public void close() throws OrtException { }

    public static class SessionOptions implements AutoCloseable {
        public SessionOptions() { }

        public void setMemoryPatternOptimization(boolean memoryPatternOptimization) throws OrtException { }

        public void setCPUArenaAllocator(boolean useArena) throws OrtException { }

        public void setIntraOpNumThreads(int numThreads) throws OrtException { }

        @Override
        public void close() { }
    }

    public static class Result implements AutoCloseable, Iterable<Map.Entry<String, OnnxValue>> {
        public OnnxValue get(int index) { throw new UnsupportedOperationException("declaration only"); }

        public int size() { throw new UnsupportedOperationException("declaration only"); }

        @Override
        public Iterator<Map.Entry<String, OnnxValue>> iterator() {
            throw new UnsupportedOperationException("declaration only");
        }

        @Override
        public void close() { }
    }
}
