// Not built here: this machine has no Android SDK. Versions: see README.md.
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
}

android {
    namespace = "dev.quicedge.demo"
    compileSdk = 34

    defaultConfig {
        applicationId = "dev.quicedge.demo"
        // 26, not 24: OrtTrainingSession.saveCheckpoint takes a java.nio.file.Path (Android API 26+).
        minSdk = 26
        targetSdk = 34
        versionCode = 1
        versionName = "0.1"
    }

    buildTypes {
        release {
            isMinifyEnabled = false
        }
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }

    kotlinOptions {
        jvmTarget = "17"
    }
}

dependencies {
    // ONNX Runtime with the on-device training API (ai.onnxruntime.OrtTrainingSession); 1.19.2 is the version
    // the Python side (onnxruntime-training-cpu 1.19.2) exports bundles with, and the last one published.
    implementation("com.microsoft.onnxruntime:onnxruntime-training-android:1.19.2")
}

// ./gradlew :app:copyBundle -PquicEdgeBundle=/path/to/bundle copies an exported bundle into the assets.
tasks.register<Copy>("copyBundle") {
    description = "Copy a bundle from `quic-edge export --runtime ort` (-PquicEdgeBundle=DIR) into src/main/assets/bundle"
    from(providers.gradleProperty("quicEdgeBundle"))
    into(layout.projectDirectory.dir("src/main/assets/bundle"))
}
