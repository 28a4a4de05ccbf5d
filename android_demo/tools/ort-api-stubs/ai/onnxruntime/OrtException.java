// Declarations only: the subset of ONNX Runtime's Java API (package ai.onnxruntime, onnxruntime-training-android
// 1.19.2) that Trainer.kt calls, with the signatures of microsoft/onnxruntime java/src/main/java/ai/onnxruntime.
// tests/test_android_demo.py hands these files to kotlinc so that Trainer.kt is type-checked on a machine
// without the Android SDK or Maven. They are never compiled into the app (Gradle uses the real AAR).
package ai.onnxruntime;

public class OrtException extends Exception {
    public OrtException(String message) { super(message); }
}
