// Versions chosen for this project and not built here (no Android SDK on the machine that wrote it):
// Android Gradle Plugin 8.5.2 (needs Gradle 8.7+, JDK 17), Kotlin 1.9.24. See README.md.
plugins {
    id("com.android.application") version "8.5.2" apply false
    id("org.jetbrains.kotlin.android") version "1.9.24" apply false
}
